"""Phone close-ups of speed limits (issue 12): the evaluation's class-less ground truth, the
pieces of a large sign that must not come back as signs of their own, and who names a
speed limit (or a STOP) when the reading and the classifier disagree."""

from __future__ import annotations

import base64
from pathlib import Path

import cv2
import numpy as np
import pytest

from roadsigns.cli.groundtruth import Box, GroundTruthError, read_gt
from roadsigns.cli.metrics import Pred, detection_report
from roadsigns.detector import scales
from roadsigns.ocr.reader import Reading, SignReader
from roadsigns.ocr.service import name_sign
from roadsigns.ocr.shape import shape_cue
from roadsigns.shared import classes
from roadsigns.shared.schemas import Detection


def test_ground_truth_names_a_class_less_sign_by_its_text(tmp_path: Path) -> None:
    gt = tmp_path / "gt.txt"
    gt.write_text("a.jpg;10;10;109;109;-1;40\na.jpg;200;10;259;69;2\nb.jpg;0;0;49;49;1;30\n")
    boxes = read_gt(gt)
    forty, fifty = boxes["a.jpg"]
    assert (forty.class_id, forty.expected_text, forty.category) == (-1, "40", "prohibitory")
    assert (fifty.text, fifty.expected_text, fifty.category) == (None, "50", "prohibitory")
    assert boxes["b.jpg"][0].expected_text == "30"
    gt.write_text("a.jpg;10;10;109;109;-1\n")  # a sign outside the 43, only to be found (a parking sign)
    (other,) = read_gt(gt)["a.jpg"]
    assert (other.class_id, other.expected_text, other.category) == (-1, None, None)
    gt.write_text("a.jpg;10;10;109;109;-2;40\n")
    with pytest.raises(GroundTruthError, match="not one of the 43"):
        read_gt(gt)


def test_named_right_counts_the_open_set_name_and_the_class_metrics_leave_it_out() -> None:
    gt = {"a.jpg": [Box(10, 10, 109, 109, -1, "40"), Box(200, 10, 259, 69, 2)]}
    forty, fifty = gt["a.jpg"][0].xyxy, gt["a.jpg"][1].xyxy
    right = {
        "a.jpg": [
            Pred(forty, None, 0.8, "40", "prohibitory", "speed limit 40"),
            Pred(fifty, 2, 0.9, "50", None, classes.get(2).name),
        ]
    }
    report = detection_report(gt, right, 0.25)
    assert report["named_right"] == 1.0 and report["ocr_exact"] == 1.0 and report["ocr_signs"] == 2
    # The 43-class figures see only the class-50 sign; the "speed limit 40" report counts against
    # their precision (no class) but not their recall; class-agnostic figures see both signs.
    assert report["map50"] == 1.0 and report["recall"] == 1.0 and report["precision"] == 0.5
    assert report["map50_category"] == 1.0 and report["recall_any"] == 1.0 and report["precision_any"] == 1.0
    # The forced class the classifier gives a "40" ("speed limit 80") is a wrong name, read right or not.
    forced = {"a.jpg": [Pred(forty, 5, 0.8, "40", None, classes.get(5).name), right["a.jpg"][1]]}
    report = detection_report(gt, forced, 0.25)
    assert report["named_right"] == 0.5 and report["ocr_exact"] == 1.0 and report["recall_any"] == 1.0


def test_pieces_of_a_sign_inside_its_box_are_dropped() -> None:
    boxes = np.array(
        [
            [50, 140, 560, 710],  # the whole sign, best
            [175, 165, 525, 505],  # its face and digits: IoU 0.41 with it, so NMS keeps it
            [600, 100, 700, 200],  # a sign beside it
            [560, 100, 650, 200],  # overlapping the one beside it by half: not inside it
        ],
        np.float32,
    )
    order = np.array([0, 1, 2, 3])
    assert scales.uncontained(boxes, order).tolist() == [0, 2, 3]
    # Only a better box removes a piece: the other way round, both stay.
    assert scales.uncontained(boxes[[1, 0]], np.array([1, 0])).tolist() == [1, 0]


def _speed_sign(text: str, size: int = 64) -> np.ndarray:
    big = 256
    img = np.full((big, big, 3), (90, 120, 80), np.uint8)
    cv2.circle(img, (big // 2, big // 2), int(big * 0.42), (40, 40, 210), -1)
    cv2.circle(img, (big // 2, big // 2), int(big * 0.32), (245, 245, 245), -1)
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_DUPLEX, 2.6, 9)
    cv2.putText(img, text, ((big - tw) // 2, (big + th) // 2), cv2.FONT_HERSHEY_DUPLEX, 2.6, (20, 20, 20), 9)
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)


def _detection(crop: np.ndarray, class_id: int, probability: float) -> Detection:
    ok, png = cv2.imencode(".png", crop)
    assert ok
    cls = classes.get(class_id)
    return Detection(
        bbox=[0.0, 0.0, 60.0, 60.0],
        class_id=class_id,
        class_name=cls.name,
        category=cls.category,
        confidence=0.9 * probability,
        detector_confidence=0.9,
        class_probability=probability,
        crop_png_b64=base64.b64encode(png.tobytes()).decode(),
    )


def test_a_number_no_class_carries_names_the_sign_at_an_even_chance() -> None:
    crop = _speed_sign("55")
    cue = shape_cue(crop)
    assert cue.speed_face
    sure_fifty = _detection(crop, 2, 0.95)  # the classifier is sure a "55" is "speed limit 50"
    unsure_read = Reading("55", 62.0, "digits/cnn")  # the digit reader alone, at 0.62
    sign = name_sign(sure_fifty, unsure_read, cue, 0.5)
    assert (sign.class_id, sign.class_name, sign.class_source, sign.text) == (None, "speed limit 55", "reading", "55")
    assert sign.confidence == pytest.approx(0.9 * 0.62)
    # Under an even chance, or from Tesseract alone, the classifier's class stands.
    for weak in (Reading("55", 45.0, "digits/cnn-unsure"), Reading("55", 90.0, "digits/vote2of3")):
        assert name_sign(sure_fifty, weak, cue, 0.5).class_source == "classifier"


def test_a_sure_classifier_keeps_its_speed_limit_against_a_less_sure_reader_alone() -> None:
    crop = _speed_sign("30")
    cue = shape_cue(crop)
    thirty = _detection(crop, 1, 0.96)
    # The digit reader, alone, reads "50" at 0.83: sure, but less sure than the classifier.
    alone = Reading("50", 83.0, "digits/cnn", sure=True)
    assert name_sign(thirty, alone, cue, 0.5).class_id == 1
    # Surer than the classifier, or agreed by Tesseract, the reading names it.
    assert name_sign(thirty, Reading("50", 98.0, "digits/cnn", sure=True), cue, 0.5).class_id == 2
    agreed = Reading("50", 83.0, "digits/cnn+tesseract", sure=True)
    assert name_sign(thirty, agreed, cue, 0.5).class_id == 2
    # An unsure classifier is corrected by a sure reading, as before.
    assert name_sign(_detection(crop, 1, 0.4), alone, cue, 0.5).class_id == 2


def test_an_unsure_classifier_leaves_a_class_number_to_the_reader_at_an_even_chance() -> None:
    crop = _speed_sign("50")
    cue = shape_cue(crop)
    unsure = _detection(crop, 5, 0.4)  # "speed limit 80" at 0.4: the classifier has no say
    read = Reading("50", 64.0, "digits/cnn")  # the digit reader alone at 0.64: not sure, over an even chance
    sign = name_sign(unsure, read, cue, 0.5)
    assert (sign.class_id, sign.class_name, sign.class_source) == (2, "speed limit 50", "reading")
    assert sign.confidence == pytest.approx(0.9 * 0.64)
    # A sure classifier keeps its class against such a reading; under an even chance, or from
    # Tesseract alone, the sign stays an "other sign" of its shape's category.
    assert name_sign(_detection(crop, 5, 0.9), read, cue, 0.5).class_id == 5
    for weak in (Reading("50", 45.0, "digits/cnn-unsure"), Reading("50", 90.0, "digits/vote2of3")):
        other = name_sign(unsure, weak, cue, 0.5)
        assert (other.class_id, other.class_source, other.category) == (None, "shape", "prohibitory")


def _red_face(size: int, word: str | None) -> np.ndarray:
    """A STOP-type octagon with white capitals, or (word None) a no-entry disc with its white bar."""
    big = 256
    img = np.full((big, big, 3), (120, 110, 100), np.uint8)
    if word is None:
        cv2.circle(img, (big // 2, big // 2), int(big * 0.42), (30, 30, 200), -1)
        cv2.rectangle(img, (60, 112), (196, 144), (245, 245, 245), -1)
    else:
        turns = np.pi / 8 + np.arange(8) * np.pi / 4
        corners = big / 2 + big * 0.42 * np.stack([np.cos(turns), np.sin(turns)], axis=1)
        cv2.fillPoly(img, [corners.astype(np.int32)], (30, 30, 200))
        (tw, th), _ = cv2.getTextSize(word, cv2.FONT_HERSHEY_DUPLEX, 1.9, 7)
        cv2.putText(img, word, ((big - tw) // 2, (big + th) // 2), cv2.FONT_HERSHEY_DUPLEX, 1.9, (245, 245, 245), 7)
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def reader() -> SignReader:
    return SignReader()


@pytest.mark.parametrize("size", [24, 48])
def test_a_stop_the_classifier_is_unsure_of_is_named_by_its_word(reader: SignReader, size: int) -> None:
    crop = _red_face(size, "STOP")
    cue = shape_cue(crop)
    assert cue.shape == "red_face"
    unsure = _detection(crop, 17, 0.3)  # "no entry" at 0.3: a STOP in a type face it never saw
    reading = reader.read(crop, unsure.class_id, unsure.class_probability, cue)
    assert (reading.text, reading.sure) == ("STOP", True)
    sign = name_sign(unsure, reading, cue, 0.5)
    assert (sign.class_id, sign.class_name, sign.class_source, sign.text) == (14, "stop", "reading", "STOP")
    # A classifier sure of its class keeps it; an unsure reading leaves an "other sign".
    assert name_sign(_detection(crop, 17, 0.9), reading, cue, 0.5).class_id == 17
    assert name_sign(unsure, Reading("STOP", 40.0, "word/cnn-unsure"), cue, 0.5).class_source == "shape"


def test_a_no_entry_disc_is_not_read_as_a_word(reader: SignReader) -> None:
    crop = _red_face(48, None)
    cue = shape_cue(crop)
    assert cue.shape == "red_face"
    # The word reader guesses letters on the bar; the guess is not reported, and nothing names it STOP.
    reading = reader.read(crop, 17, 0.3, cue)
    assert reading.text == "" and not reading.mode.startswith("word")
    assert name_sign(_detection(crop, 17, 0.3), reading, cue, 0.5).class_id is None
