"""The 43-class sign classifier: a small CNN on 32x32 crops.

Kept beside the detector because the worker runs it on every crop; the training
package imports the same definition so that a trained state dict always fits.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

INPUT_SIZE = 32
NUM_CLASSES = 43


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class SignNet(nn.Module):
    """Three conv blocks (32, 64, 128 channels), global average pool, one linear layer."""

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.features = nn.Sequential(_block(3, 32), _block(32, 64), _block(64, 128))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.3), nn.Linear(128, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def standardise(batch_uint8_rgb: np.ndarray) -> np.ndarray:
    """N x H x W x 3 uint8 RGB -> N x 3 x H x W float32, each image to zero mean, unit std.

    Per-image standardisation takes out most of the lighting differences between a
    dim dusk photo and a sunlit one, which is what GTSRB varies most in.
    """
    x = batch_uint8_rgb.astype(np.float32)
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    std = x.std(axis=(1, 2, 3), keepdims=True)
    x = (x - mean) / np.maximum(std, 1.0)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
