"""The classifier's sign gate: one more output column that says whether a proposal is a sign at all.

The gated network must name classes exactly as the network without the gate does, old
classifier files (43 columns) must run unchanged, and a proposal the gate rejects never
becomes a report, however sure the classifier is of its class. The gate's training (a
logistic regression folded into one linear layer) must separate what it is shown. The
shipped classifier carries a gate: the GTSDB sample crops pass it.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from roadsigns.detector.classifier_net import SignEnsemble, load_classifier
from roadsigns.detector.model import SignDetector, _split, signs
from roadsigns.detector.preprocess import INPUT_SIZE, NUM_CLASSES
from roadsigns.training import sign_gate
from tests.conftest import DATA


def test_a_gated_classifier_names_classes_as_the_ungated_one(tmp_path: Path) -> None:
    torch.manual_seed(0)
    plain = SignEnsemble(2, width=8).eval()
    gated = SignEnsemble(2, width=8, gated=True).eval()
    gated.load_state_dict(plain.state_dict(), strict=False)
    x = torch.randn(5, 3, INPUT_SIZE, INPUT_SIZE)
    with torch.no_grad():
        out, log_probs = gated(x), plain(x)
    assert out.shape == (5, NUM_CLASSES + 1) and log_probs.shape == (5, NUM_CLASSES)
    torch.testing.assert_close(out[:, :NUM_CLASSES], log_probs)
    # Saved and loaded, the gate comes back with the members.
    torch.save(gated.state_dict(), tmp_path / "classifier.pt")
    loaded = load_classifier(tmp_path / "classifier.pt")
    assert isinstance(loaded, SignEnsemble) and loaded.gate is not None
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), out)


def test_split_reads_the_gate_column_and_lets_old_files_through() -> None:
    logits = np.zeros((2, NUM_CLASSES + 1), np.float32)
    logits[0, 3], logits[0, NUM_CLASSES] = 5.0, -3.0
    logits[1, 7], logits[1, NUM_CLASSES] = 5.0, 3.0
    probs, sign = _split(logits)
    assert probs.shape == (2, NUM_CLASSES) and probs.argmax(1).tolist() == [3, 7]
    np.testing.assert_allclose(sign, 1 / (1 + np.exp([3.0, -3.0])), rtol=1e-6)
    old_probs, old_sign = _split(logits[:, :NUM_CLASSES])  # a classifier without a gate
    np.testing.assert_allclose(old_probs, probs, rtol=1e-6)
    assert old_sign.tolist() == [1.0, 1.0]


def test_a_proposal_the_gate_rejects_is_never_reported() -> None:
    boxes = np.array([[0, 0, 20, 20], [100, 0, 120, 20]], np.float32)
    scores = np.array([0.9, 0.9], np.float32)
    probs = np.zeros((2, NUM_CLASSES), np.float32)
    probs[:, 12] = 1.0  # the classifier is sure of both: "priority road"
    crops = [np.zeros((24, 24, 3), np.uint8)] * 2
    assert len(signs(boxes, scores, crops, probs, 0.25)) == 2
    kept = signs(boxes, scores, crops, probs, 0.25, np.array([False, True]))
    assert [s.bbox[0] for s in kept] == [100.0]


def test_fit_separates_and_folds_the_standardisation() -> None:
    gen = torch.Generator().manual_seed(1)
    signs_x = torch.randn(200, 6, generator=gen) * 10 + 50
    others_x = torch.randn(600, 6, generator=gen) * 10 + 50
    signs_x[:, 2] += 40  # one feature, on another scale than the rest, tells them apart
    x, y = torch.cat([signs_x, others_x]), torch.cat([torch.ones(200), torch.zeros(600)])
    layer = sign_gate.fit(x, y, c=0.1)
    with torch.no_grad():
        p = torch.sigmoid(layer(x)).squeeze(1)
    assert ((p >= 0.5) == (y > 0)).float().mean() > 0.97
    assert layer.weight[0, 2].abs() == layer.weight.abs().max()  # it leans on that feature


@pytest.fixture(scope="module")
def detector() -> SignDetector:
    return SignDetector(backend="onnx", device="cpu")


def test_the_shipped_gate_passes_the_sample_signs(detector: SignDetector) -> None:
    crops = [cv2.imread(str(p)) for p in sorted((DATA / "crops").glob("*.png"))]
    probs, sign = detector.judge(crops)
    assert len(crops) >= 10 and probs.shape == (len(crops), NUM_CLASSES)
    assert (sign >= detector.min_sign_probability).all()
    np.testing.assert_allclose(probs, detector.classify(crops))  # classify is judge without the gate
