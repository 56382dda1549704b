"""The classifier's second view (`SignDetector(zoom_view=)`): a crop it is unsure of is seen again
zoomed out, and the two views' probabilities are averaged; a crop it is sure of is left alone.

The shipped ONNX classifier on the GTSDB sample crops, and on blends of two of them, which leave it
unsure. README "A second view of unsure crops" has what the view buys on the held-out crops.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from roadsigns.detector.model import SignDetector, zoomed_out
from roadsigns.detector.preprocess import INPUT_SIZE
from tests.conftest import DATA

CROPS = DATA / "crops"


def test_zoomed_out_shrinks_about_the_centre_and_carries_the_edges() -> None:
    image = np.zeros((1, 32, 32, 3), np.uint8)
    image[0, 8:24, 8:24] = 255  # a 16 px white square, centred
    image[0, :, 0] = 100  # a grey left edge
    assert np.array_equal(zoomed_out(image, 1.0), image)
    half = zoomed_out(image, 0.5)[0]
    white = np.argwhere(half[..., 0] > 127)
    assert white.min(axis=0).tolist() == [12, 12] and white.max(axis=0).tolist() == [19, 19]  # 8 px, centred
    assert (half[:, 0] == 100).all()  # the edge column is carried outward, not padded black
    assert (half[:5, 10:22] == 0).all()  # round the square, black as before


@pytest.fixture(scope="module")
def crops() -> list[np.ndarray]:
    return [
        cv2.resize(cv2.imread(str(p)), (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_AREA)
        for p in sorted(CROPS.glob("*.png"))
    ]


def test_only_unsure_crops_get_the_second_view(crops: list[np.ndarray]) -> None:
    one_view = SignDetector(backend="onnx", device="cpu", zoom_view=0)
    two_views = SignDetector(backend="onnx", device="cpu", zoom_view=0.9)
    others = [np.roll(crops, k, axis=0) for k in (1, 7, 19)]  # each crop against three of another class
    blends = [cv2.addWeighted(a, 0.5, other[i], 0.5, 0) for other in others for i, a in enumerate(crops)]
    batch = crops + blends
    alone = one_view.classify(batch)
    both = two_views.classify(batch)
    unsure = alone.max(axis=1) < SignDetector.SECOND_VIEW_BELOW
    assert unsure[len(crops) :].sum() >= 10  # the blends leave it unsure: the second view is exercised
    assert unsure[: len(crops)].mean() < 0.2  # ... and most real crops are sure
    # Sure crops: exactly one view's answer.
    np.testing.assert_array_equal(both[~unsure], alone[~unsure])
    # Unsure crops: the mean of the crop's and its zoomed-out view's probabilities.
    rgb = np.stack([cv2.cvtColor(c, cv2.COLOR_BGR2RGB) for c in np.array(batch)[unsure]])
    zoomed = [cv2.cvtColor(c, cv2.COLOR_RGB2BGR) for c in zoomed_out(rgb, 0.9)]
    np.testing.assert_allclose(both[unsure], (alone[unsure] + one_view.classify(zoomed)) / 2, atol=1e-5)
    np.testing.assert_allclose(both.sum(axis=1), 1.0, atol=1e-5)
