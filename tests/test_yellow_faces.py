"""Signs as other countries paint them: Sweden, Finland, Poland and others give warning triangles,
give-way signs and some prohibitory discs a yellow face where Germany's is white. Training shows
the classifier and the digit reader such faces; these tests hold the painting to what it claims
and the shipped models to reading yellow-faced signs."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from roadsigns.training import readers
from roadsigns.training.classifier import YELLOW_FACED, yellow_face, yellow_faced

CROPS = Path(__file__).parent / "data" / "crops"  # GTSDB signs cut as the service cuts them: NAME_cCLASS.png


def _white_sign(rim: tuple[int, int, int] = (200, 30, 40), face: int = 235) -> np.ndarray:
    """A speed-limit sign as GTSRB crops it, 32x32 RGB: grey surround, red rim, white face, black 80."""
    sign = np.full((32, 32, 3), (110, 120, 128), np.uint8)
    cv2.circle(sign, (16, 16), 13, rim, -1, cv2.LINE_AA)
    cv2.circle(sign, (16, 16), 10, (face, face, face - 5), -1, cv2.LINE_AA)
    cv2.putText(sign, "80", (8, 21), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (20, 20, 20), 2, cv2.LINE_AA)
    return sign


def test_yellow_face_paints_the_face_and_keeps_rim_and_digits() -> None:
    sign = _white_sign()
    painted = yellow_face(sign)
    hsv = cv2.cvtColor(sign, cv2.COLOR_RGB2HSV)
    changed = np.any(painted != sign, axis=2)
    assert changed.sum() > 60  # a good part of the face
    new = cv2.cvtColor(painted, cv2.COLOR_RGB2HSV)
    assert np.all(np.abs(new[..., 0][changed].astype(int) - 26) <= 2) and np.all(new[..., 1][changed] >= 150)
    # Only pale pixels changed; the dark digits and the saturated red rim did not.
    assert np.all(hsv[..., 1][changed] < 70)
    dark = hsv[..., 2] < 0.6 * np.median(hsv[..., 2][changed])  # the digits
    assert dark.any() and not changed[dark].any()
    red = (hsv[..., 1] > 120) & ((hsv[..., 0] < 10) | (hsv[..., 0] > 170))
    assert red.any() and not changed[red].any()


def test_only_classes_with_a_yellow_form_are_painted() -> None:
    sign = _white_sign()
    labels = np.array([1, 14, 17, 38, 13])  # speed limit 30, stop, no entry, keep right, give way
    out = yellow_faced(np.stack([sign] * 5), labels)
    assert [bool(np.any(o != sign)) for o in out] == [True, False, False, False, True]
    assert {14, 17, 12, 38}.isdisjoint(YELLOW_FACED) and {0, 8, 11, 13, 31} <= YELLOW_FACED
    # Without labels every crop is painted; a generator gives each its own shade.
    shades = yellow_faced(np.stack([sign] * 4), rng=np.random.default_rng(0))
    assert all(np.any(s != sign) for s in shades) and len({s.tobytes() for s in shades}) > 1


def test_rendered_speed_limits_are_yellow_only_when_asked() -> None:
    """The classifier's rendered signs (no `yellow`) draw exactly as before; the digit reader's
    training asks for a share of yellow faces."""
    plain, _ = readers.synthetic(readers.NUMBERS, 6, seed=3)
    again, _ = readers.synthetic(readers.NUMBERS, 6, seed=3, yellow=0.0)
    assert np.array_equal(plain, again)
    yellow, _ = readers.synthetic(readers.NUMBERS, 6, seed=3, yellow=1.0)
    middle = cv2.cvtColor(yellow[:, 12:20, 12:20].reshape(-1, 8, 3), cv2.COLOR_RGB2HSV)
    assert np.median(middle[..., 1]) > np.median(
        cv2.cvtColor(plain[:, 12:20, 12:20].reshape(-1, 8, 3), cv2.COLOR_RGB2HSV)[..., 1]
    )


def test_shipped_classifier_names_yellow_faced_signs() -> None:
    """The GTSDB sample crops of classes with a yellow form, painted yellow: the shipped classifier
    names them as it names the white originals."""
    from roadsigns.detector.model import SignDetector

    detector = SignDetector(backend="openvino")
    crops, labels = [], []
    for path in sorted(CROPS.glob("*.png")):
        label = int(path.stem.rsplit("_c", 1)[1])
        if label in YELLOW_FACED:
            crops.append(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB))
            labels.append(label)
    painted = [cv2.cvtColor(yellow_face(c), cv2.COLOR_RGB2BGR) for c in crops]
    white = detector.classify([cv2.cvtColor(c, cv2.COLOR_RGB2BGR) for c in crops]).argmax(1)
    yellow = detector.classify(painted).argmax(1)
    assert len(labels) >= 30
    assert (white == np.array(labels)).mean() >= 0.95
    assert (yellow == np.array(labels)).mean() >= 0.95, list(zip(labels, yellow.tolist(), strict=True))


def test_a_yellow_faced_speed_limit_keeps_its_red_ring() -> None:
    """The OCR pool reads the number on an unsure class only where the shape cue sees a red ring
    round a light face. A yellow face has no white: balancing its bright pixels to white lifted
    the blue of a dull, shaded rim until the rim was no longer red (this sign's yellow form was
    "unknown" before `colour_masks` stopped scaling blue past red)."""
    from roadsigns.ocr.shape import shape_cue

    for rim in ((120, 60, 85), (140, 70, 100), (200, 30, 40)):
        white = _white_sign(rim, face=200)
        for sign in (white, yellow_face(white)):
            cue = shape_cue(cv2.cvtColor(sign, cv2.COLOR_RGB2BGR))
            assert cue.speed_face and cue.category == "prohibitory", (rim, cue)


def test_finetune_continues_each_member_from_its_trained_state() -> None:
    """`classifier.finetune` continues the trained network (the shipped one: 3 epochs with yellow
    faces after the 15 of the recipe): at a learning rate of 0 it is the network it started from."""
    import torch

    from roadsigns.training import classifier

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (48, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(48) % 43
    idx = np.arange(48)
    recipe = {"width": 8, "epochs": 1, "batch": 16, "lr": 0.003, "weight_decay": 0.0, "label_smoothing": 0.0}
    base, _ = classifier.train(images, labels, idx, idx[:0], recipe, seed=1)
    frozen = {**recipe, "finetune": {"epochs": 1, "lr": 0.0, "yellow_faces": 0.5}}
    tuned = {**recipe, "finetune": {"epochs": 1, "lr": 0.003, "yellow_faces": 0.5}}
    seen: list[int] = []
    same, _, _ = classifier.train_ensemble(
        images, labels, idx, idx[:0], {**frozen, "seeds": [1]}, lambda m, e, _: seen.append(e)
    )
    moved, _, _ = classifier.train_ensemble(images, labels, idx, idx[:0], {**tuned, "seeds": [1]})
    assert seen == [0, 1]  # the fine-tune's epochs numbered after the recipe's
    # Weights, that is: batch-norm statistics follow the batches even at a rate of 0.
    weights = dict(base.named_parameters())
    for name, value in same.members[0].named_parameters():
        assert torch.equal(value, weights[name]), name
    assert any(not torch.equal(value, weights[name]) for name, value in moved.members[0].named_parameters())
