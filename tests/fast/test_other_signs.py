"""Signs outside the 43 classes that are only to be found (a parking, crossing or information sign):
the hand-checked list of them in the GTSDB photos, how training merges it, how evaluation counts it."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from roadsigns.cli.groundtruth import Box, read_gt
from roadsigns.cli.metrics import Pred, detection_report
from roadsigns.shared import classes
from roadsigns.training.pipeline import other_signs, with_other_signs
from roadsigns.training.scenes import other_signs_gt

CONFIG = yaml.safe_load(Path("training/config.yaml").read_text())


def test_the_list_holds_only_class_less_boxes_inside_a_gtsdb_frame() -> None:
    listed = other_signs(CONFIG["data"])
    boxes = [b for bs in listed.values() for b in bs]
    assert len(boxes) >= 100 and len(listed) >= 80
    assert all(b.class_id == -1 and b.text is None for b in boxes)
    assert all(0 <= b.left < b.right < 1360 and 0 <= b.top < b.bottom < 800 for b in boxes)


def test_training_merges_them_with_gtsdb_and_refuses_a_class(tmp_path: Path) -> None:
    gt = {"a.jpg": [Box(0, 0, 9, 9, 14)], "b.jpg": [Box(5, 5, 20, 20, 1)]}
    extra = {"a.jpg": [Box(30, 30, 49, 49, -1)], "c.jpg": [Box(1, 1, 8, 8, -1)]}
    merged = with_other_signs(gt, extra)
    assert merged == {"a.jpg": [gt["a.jpg"][0], extra["a.jpg"][0]], "b.jpg": gt["b.jpg"], "c.jpg": extra["c.jpg"]}
    listed = tmp_path / "other.txt"
    listed.write_text("a.jpg;30;30;49;49;-1\na.jpg;0;0;9;9;14\n")
    with pytest.raises(ValueError, match="only signs outside the 43"):
        other_signs({"other_signs": str(listed)})
    assert other_signs({"other_signs": None}) == {}


def test_a_sign_only_to_be_found_counts_for_finding_not_for_naming() -> None:
    stop, parking = Box(10, 10, 59, 59, 14), Box(100, 10, 139, 49, -1)
    gt = {"a.jpg": [stop, parking]}
    named_stop = Pred(stop.xyxy, 14, 0.9, "STOP", None, classes.get(14).name)
    found_both = {"a.jpg": [named_stop, Pred(parking.xyxy, None, 0.4, "", "other", "other sign")]}
    report = detection_report(gt, found_both, 0.25)
    assert report["recall_any"] == 1.0 and report["precision_any"] == 1.0
    assert report["named_right"] == 1.0  # the parking sign has no name to get right
    assert report["recall"] == 1.0 and report["precision"] == 0.5  # the 43 classes do not see it
    missed = detection_report(gt, {"a.jpg": [named_stop]}, 0.25)
    assert missed["recall_any"] == 0.5 and missed["named_right"] == 1.0
    assert missed["recall_by_size"]["48-96"] == {"signs": 1, "recall": 1.0}
    assert missed["recall_by_size"]["24-48"] == {"signs": 1, "recall": 0.0}
    written = Path("training/gtsdb_other_signs.txt")
    assert read_gt(written) == other_signs(CONFIG["data"])


def test_the_half_size_and_grid_sets_get_the_other_signs_where_their_photos_went(tmp_path: Path) -> None:
    names = ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg"]  # e fills no 2x2 grid: _mosaic leaves it out
    for label, line in (("downscaled", "a.jpg;1;1;9;9;14"), ("large", "large_000.jpg;1;1;9;9;14")):
        (tmp_path / label / "images").mkdir(parents=True)
        (tmp_path / label / "gt.txt").write_text(line + "\n")
    cv2.imwrite(str(tmp_path / "large" / "images" / "large_000.jpg"), np.zeros((1600, 2720, 3), np.uint8))
    others = {"b.jpg": [Box(100, 50, 139, 89, -1)], "c.jpg": [Box(10, 20, 29, 39, -1)], "e.jpg": [Box(0, 0, 9, 9, -1)]}
    assert other_signs_gt(names, others, tmp_path) == {"downscaled": 3, "large": 2}
    assert read_gt(tmp_path / "downscaled" / "gt-all.txt")["b.jpg"] == [Box(50, 25, 69, 44, -1)]
    grid = read_gt(tmp_path / "large" / "gt-all.txt")["large_000.jpg"]
    # b is the grid's top right quarter, c its bottom left; GTSDB's sign stays first.
    assert grid[1:] == [Box(1460, 50, 1499, 89, -1), Box(10, 820, 29, 839, -1)] and grid[0].class_id == 14
