"""The classifier's low-resolution augmentation (issue 12): far signs hold 8-20 px of detail.

`classifier._low_res` shrinks a share of each batch and enlarges it back, so that the network
sees crops as the service hands it a 12 px sign: enlarged to 32 px, without the detail.
"""

from __future__ import annotations

import numpy as np
import torch

from roadsigns.detector.preprocess import standardise
from roadsigns.training import classifier


def _detail(crop: torch.Tensor) -> float:
    """Energy of neighbouring-pixel differences: what shrinking takes away first."""
    return float((crop[..., 1:] - crop[..., :-1]).pow(2).mean() + (crop[..., 1:, :] - crop[..., :-1, :]).pow(2).mean())


def test_low_res_blurs_its_share_and_leaves_the_rest() -> None:
    rng = np.random.default_rng(3)
    # Crops with fine detail: a 4 px checkerboard under noise, as standardised 32 px crops.
    board = (np.indices((32, 32)).sum(axis=0) // 4 % 2 * 200 + 20).astype(np.float32)
    images = np.clip(board[None, :, :, None] + rng.normal(0, 20, (64, 32, 32, 3)), 0, 255).astype(np.uint8)
    x = torch.from_numpy(standardise(images))
    out = classifier._low_res(x, torch.Generator().manual_seed(1), share=0.5)
    assert out.shape == x.shape
    changed = [not torch.equal(a, b) for a, b in zip(out, x, strict=True)]
    assert 16 <= sum(changed) <= 48
    assert all(_detail(after) < 0.7 * _detail(before) for before, after, c in zip(x, out, changed, strict=True) if c)
    # The batch is not changed in place, and a share of 0 changes nothing.
    assert torch.equal(x, torch.from_numpy(standardise(images)))
    assert torch.equal(classifier._low_res(x, torch.Generator().manual_seed(1), share=0.0), x)
