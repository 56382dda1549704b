"""The `roadsigns` command: analyze and evaluate in one process, and its errors on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from roadsigns.cli.groundtruth import read_gt
from roadsigns.cli.metrics import Pred, average_precision, detection_report
from roadsigns.shared import classes
from tests.conftest import PHOTOS

ROADSIGNS = str(Path(sys.executable).parent / "roadsigns")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ROADSIGNS, *args, "--quiet"], capture_output=True, text=True, timeout=600)


def test_analyze_writes_json_and_annotated_images(tmp_path: Path) -> None:
    out = run(
        "analyze",
        str(PHOTOS / "00330.jpg"),
        str(PHOTOS / "00121.jpg"),
        "--annotate",
        str(tmp_path),
        "-o",
        str(tmp_path / "r.json"),
    )
    assert out.returncode == 0, out.stderr
    results = json.loads((tmp_path / "r.json").read_text())
    assert [Path(r["file"]).name for r in results] == ["00330.jpg", "00121.jpg"]
    assert any(s["class_id"] == 2 and s["text"] == "50" for s in results[0]["signs"])
    keys = {"bbox", "class_id", "class_name", "category", "confidence", "text", "class_source"}
    assert all(keys <= set(s) for r in results for s in r["signs"])
    assert all(s["class_source"] == "classifier" for s in results[0]["signs"] + results[1]["signs"])
    assert any(s["class_id"] == 7 for s in results[1]["signs"])
    annotated = cv2.imread(str(tmp_path / "00330.jpg"))
    assert annotated.shape == cv2.imread(str(PHOTOS / "00330.jpg")).shape


def test_evaluate_detection_on_the_sample_photos() -> None:
    out = run("evaluate", "detection", "--images", str(PHOTOS), "--gt", str(PHOTOS / "gt.txt"))
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    for key in (
        "map50",
        "map50_category",
        "map50_any",
        "precision",
        "recall",
        "ocr_exact",
        "images",
        "seconds_per_image",
    ):
        assert key in report
    assert report["images"] == 5 and report["signs"] == 10
    assert report["map50_any"] >= 0.7  # two of the ten signs are 20 px wide: see README
    by_size = report["recall_by_size"]
    assert list(by_size) == ["<24", "24-48", "48-96", "96-192", ">=192"]
    assert sum(b["signs"] for b in by_size.values()) == 10
    assert by_size[">=192"] == {"signs": 0, "recall": None}


def test_evaluate_detection_on_photos_of_any_size(tmp_path: Path) -> None:
    """Half-size photos and a close-up side by side: one evaluation, signs in every size bucket."""
    (tmp_path / "images").mkdir()
    lines = []
    for name, boxes in read_gt(PHOTOS / "gt.txt").items():
        photo = cv2.imread(str(PHOTOS / name))
        h, w = photo.shape[:2]
        cv2.imwrite(str(tmp_path / "images" / f"half_{name}"), cv2.resize(photo, (w // 2, h // 2)))
        lines += [f"half_{name};{b.left // 2};{b.top // 2};{b.right // 2};{b.bottom // 2};{b.class_id}" for b in boxes]
    # The no-entry sign of 00501 (108 px) enlarged twice in a 480x360 window: a 216 px sign.
    window = cv2.imread(str(PHOTOS / "00501.jpg"))[232:412, 53:293]
    cv2.imwrite(str(tmp_path / "images" / "closeup.jpg"), cv2.resize(window, (480, 360)))
    lines.append(f"closeup.jpg;{(120 - 53) * 2};{(282 - 232) * 2};{(227 - 53) * 2 + 1};{(386 - 232) * 2 + 1};17")
    (tmp_path / "gt.txt").write_text("\n".join(lines) + "\n")
    out = run("evaluate", "detection", "--images", str(tmp_path / "images"), "--gt", str(tmp_path / "gt.txt"))
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["images"] == 6 and report["signs"] == 11
    by_size = report["recall_by_size"]
    assert by_size[">=192"] == {"signs": 1, "recall": 1.0}  # the close-up is found
    assert by_size["<24"]["signs"] >= 2


def test_evaluate_classification_on_real_crops(tmp_path: Path) -> None:
    # 32x32 RGB crops of the sample photos' signs, cut as GTSRB cuts them (a 10% margin).
    images, labels = [], []
    for name, boxes in read_gt(PHOTOS / "gt.txt").items():
        photo = cv2.imread(str(PHOTOS / name))
        for b in boxes:
            m = (b.right - b.left) // 10
            crop = photo[max(0, b.top - m) : b.bottom + m, max(0, b.left - m) : b.right + m]
            images.append(cv2.cvtColor(cv2.resize(crop, (32, 32), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB))
            labels.append(b.class_id)
    np.savez(tmp_path / "crops.npz", images=np.stack(images), labels=np.array(labels, np.uint8))
    out = run("evaluate", "classification", "--npz", str(tmp_path / "crops.npz"))
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["n"] == 10
    assert report["accuracy"] >= 0.7


def test_evaluate_reading_reads_speed_limits_cut_from_their_true_boxes() -> None:
    out = run("evaluate", "reading", "--images", str(PHOTOS), "--gt", str(PHOTOS / "gt.txt"))
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["n"] == 6  # the sample photos' six speed limits; the other signs carry no number
    assert report["exact"] >= 5 / 6, report["most_misread"]
    assert report["model_version"].startswith("digits.onnx@sha256:")


def test_evaluate_classification_classifies_signs_cut_from_their_true_boxes(tmp_path: Path) -> None:
    out = run("evaluate", "classification", "--images", str(PHOTOS), "--gt", str(PHOTOS / "gt.txt"))
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["n"] == len(PHOTOS.joinpath("gt.txt").read_text().splitlines())
    assert report["accuracy"] >= 0.9, report["most_confused"]
    # A box on no sign is counted wrong, and named in the confusions: the boxes are really cut.
    gt = PHOTOS.joinpath("gt.txt").read_text().splitlines()
    name = gt[0].split(";")[0]
    (tmp_path / name).symlink_to(PHOTOS / name)
    (tmp_path / "gt.txt").write_text(f"{name};0;0;40;40;14\n")  # a stop sign in the photo's top-left corner
    wrong = json.loads(
        run("evaluate", "classification", "--images", str(tmp_path), "--gt", str(tmp_path / "gt.txt")).stdout
    )
    assert (wrong["n"], wrong["errors"]) == (1, 1)
    assert list(wrong["most_confused"]) == [f"stop as {k.split(' as ')[1]}" for k in wrong["most_confused"]]


@pytest.mark.parametrize(
    "make_args, message",
    [
        (
            lambda d: ["evaluate", "detection", "--images", str(d / "nope"), "--gt", str(PHOTOS / "gt.txt")],
            "is not a folder",
        ),
        (lambda d: ["evaluate", "detection", "--images", str(PHOTOS), "--gt", str(d / "bad.txt")], "expected 6"),
        (lambda d: ["evaluate", "classification", "--npz", str(d / "bad.npz")], "need an .npz"),
        (lambda d: ["evaluate", "classification", "--npz", str(d / "flat.npz")], "must be N x H x W x 3"),
        (lambda d: ["evaluate", "classification", "--gt", str(PHOTOS / "gt.txt")], "give --npz, or --images and --gt"),
        (lambda d: ["evaluate", "reading", "--images", str(PHOTOS)], "give --npz, or --images and --gt"),
        (lambda d: ["evaluate", "reading", "--npz", str(d / "bad.npz")], "need an .npz"),
        (lambda d: ["analyze", str(d / "missing.jpg")], "no such file"),
    ],
)
def test_malformed_input_exits_nonzero_with_a_message(tmp_path: Path, make_args, message) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "bad.txt").write_text("00001.jpg;1;2;3\n")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    np.savez(tmp_path / "flat.npz", images=np.zeros((3, 32), np.uint8), labels=np.zeros(3, np.uint8))
    out = run(*make_args(tmp_path))
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr


def test_average_precision_known_cases() -> None:
    assert average_precision(np.array([1.0, 1.0]), 2) == pytest.approx(1.0)
    # A false positive ranked first: the precision envelope is 2/3 at both recall steps.
    assert average_precision(np.array([0.0, 1.0, 1.0]), 2) == pytest.approx(2 / 3)
    assert average_precision(np.array([1.0]), 2) == pytest.approx(0.5)


def test_detection_report_counts_classes_categories_and_text() -> None:
    gt = read_gt(PHOTOS / "gt.txt")
    perfect = {n: [Pred(b.xyxy, b.class_id, 0.9, "50" if b.class_id == 2 else "") for b in bs] for n, bs in gt.items()}
    report = detection_report(gt, perfect)
    assert report["map50"] == pytest.approx(1.0) and report["recall"] == 1.0 and report["precision"] == 1.0
    # Text-bearing signs here: 30, 20, 50, 70, 70, 100; only the 50 was "read".
    assert report["ocr_signs"] == 6 and report["ocr_exact"] == pytest.approx(1 / 6)
    # Wrong class, right category (speed limit 30 -> 50): class mAP drops, category mAP does not.
    swapped = {
        n: [Pred(p.bbox, 2 if p.class_id == 1 else p.class_id, p.score) for p in ps] for n, ps in perfect.items()
    }
    r2 = detection_report(gt, swapped)
    assert r2["map50"] < 1.0 and r2["map50_category"] == pytest.approx(1.0) and r2["map50_any"] == pytest.approx(1.0)


def test_detection_report_ranks_every_proposal_but_counts_recall_at_the_operating_point() -> None:
    gt = read_gt(PHOTOS / "gt.txt")
    # Every sign found, one of them only with a low score (below the reporting threshold).
    low = next(iter(gt))
    preds = {n: [Pred(b.xyxy, b.class_id, 0.1 if n == low else 0.9) for b in bs] for n, bs in gt.items()}
    report = detection_report(gt, preds, min_score=0.25)
    assert report["map50_any"] == pytest.approx(1.0)  # ranked last but still found: AP is whole
    n_signs, n_low = sum(len(bs) for bs in gt.values()), len(gt[low])
    assert report["recall"] == pytest.approx((n_signs - n_low) / n_signs)  # not reported, so not recalled
    assert report["precision"] == 1.0 and report["min_confidence"] == 0.25


def test_detection_report_counts_signs_outside_the_43_classes() -> None:
    gt = read_gt(PHOTOS / "gt.txt")
    # Every sign found, none named by a class ("other sign", "speed limit 40"): each carries
    # its category of its own, here the right one.
    unnamed = {n: [Pred(b.xyxy, None, 0.9, "", classes.get(b.class_id).category) for b in bs] for n, bs in gt.items()}
    report = detection_report(gt, unnamed, min_score=0.25)
    assert report["map50_any"] == pytest.approx(1.0) and report["recall_any"] == 1.0
    assert report["precision_any"] == 1.0
    assert report["map50"] == 0.0 and report["recall"] == 0.0  # no class: never a GT class
    assert report["precision"] == 0.0  # and not a right name either
    assert report["map50_category"] == pytest.approx(1.0)  # the category string counts
    # The category comes from the prediction's string, not from a class: a wrong one misses.
    wrong = {n: [Pred(p.bbox, None, p.score, "", "other") for p in ps] for n, ps in unnamed.items()}
    assert detection_report(gt, wrong)["map50_category"] < 0.5
    # One sign named, the rest not: class mAP counts only the named one's class.
    name, boxes = next(iter(gt.items()))
    mixed = {**unnamed, name: [Pred(boxes[0].xyxy, boxes[0].class_id, 0.9), *unnamed[name][1:]]}
    r = detection_report(gt, mixed)
    assert 0.0 < r["map50"] < 1.0 and r["map50_any"] == pytest.approx(1.0)
