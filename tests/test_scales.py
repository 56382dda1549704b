"""Photos of every size: the input sizes the localiser runs at, how passes merge, and the
pictures of every scale that training and the out-of-domain evaluation are made of."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from roadsigns.cli.groundtruth import read_gt
from roadsigns.cli.metrics import SIZE_BUCKETS, Pred, detection_report, recall_by_size
from roadsigns.detector import scales
from tests.conftest import PHOTOS, iou


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((800, 1360), [(800, 1376, "all"), (256, 384, "large")]),  # a GTSDB frame: native, plus a coarse pass
        # a phone close-up: its own size, never blown up to a dashcam's, and twice it for small signs only
        ((400, 300), [(416, 320, "all"), (800, 608, "small")]),
        ((120, 90), [(320, 256, "all"), (640, 480, "small")]),  # a thumbnail: enlarged to the smallest long side
        # a half-size dashcam frame: all three
        ((400, 680), [(416, 704, "all"), (256, 384, "large"), (800, 1376, "small")]),
        ((600, 1000), [(608, 1024, "all"), (256, 384, "large")]),  # too large to gain 1.5x under 1376
        ((3024, 4032), [(1056, 1376, "all"), (288, 384, "large")]),  # a 12 MP photo: shrunk to the longest side
        ((20000, 16), [(1376, 32, "all"), (384, 32, "large")]),  # absurd shapes still give valid strides
    ],
)
def test_plan_picks_sizes_by_the_photo(size: tuple[int, int], expected: list[tuple[int, int, str]]) -> None:
    assert scales.plan(*size, max_side=1376) == expected


def test_photos_run_at_up_to_2048_px_and_dashcam_frames_as_before() -> None:
    """The service's longest side is 2048: a larger camera's photo keeps its small signs' pixels
    (the `large` evaluation set), while a GTSDB frame and anything smaller plan as at 1376."""
    from roadsigns.shared.settings import Settings

    assert Settings().detector_imgsz == 2048
    assert scales.plan(1600, 2720, 2048) == [(1216, 2048, "all"), (256, 384, "large")]  # a 2x2 mosaic of frames
    assert scales.plan(1226, 2064, 2048) == [(1248, 2048, "all"), (256, 384, "large")]
    assert scales.plan(3024, 4032, 2048) == [(1536, 2048, "all"), (288, 384, "large")]  # a 12 MP phone photo
    for size in ((800, 1360), (400, 300), (400, 680), (600, 1000)):
        assert scales.plan(*size, 2048) == scales.plan(*size, 1376), size


def test_plan_without_coarse_or_small_pass() -> None:
    assert scales.plan(800, 1360, 1376, coarse_side=0) == [(800, 1376, "all")]
    assert scales.plan(400, 300, 1376, small_side=0) == [(416, 320, "all")]


def test_small_pass_reports_only_small_signs() -> None:
    """Enlarged, a close-up's large sign breaks into pieces; only boxes under 24 image px count."""
    boxes = np.array([[0, 0, 12, 14], [0, 0, 23.5, 20], [0, 0, 24, 10], [0, 0, 200, 180]], np.float32)
    kept, scores = scales.reported(
        scales.Pass(800, 608, "small"), boxes, np.array([0.9, 0.8, 0.7, 0.6], np.float32), 400, 300
    )
    assert kept.tolist() == boxes[:2].tolist() and scores.tolist() == pytest.approx([0.9, 0.8])
    fine = scales.Pass(416, 320)
    assert len(scales.reported(fine, boxes, np.ones(4, np.float32), 400, 300)[0]) == 4


def test_merge_keeps_the_better_box_of_a_sign_both_passes_saw() -> None:
    fine = (np.array([[10, 10, 50, 50], [200, 200, 220, 220]], np.float32), np.array([0.6, 0.9], np.float32))
    coarse = (np.array([[12, 11, 51, 49]], np.float32), np.array([0.8], np.float32))
    boxes, scores = scales.merge([fine[0], coarse[0]], [fine[1], coarse[1]])
    assert scores.tolist() == pytest.approx([0.9, 0.8])
    assert boxes[1].tolist() == [12, 11, 51, 49]


def test_combine_leaves_the_small_pass_boxes_for_the_classifier_to_settle() -> None:
    """Fine and coarse boxes meet in NMS; the small pass's box of a sign the fine pass saw too stays
    beside it, and `signs` keeps whichever the classifier makes the more confident."""
    from roadsigns.detector.model import signs

    plan = [scales.Pass(416, 704), scales.Pass(256, 384, "large"), scales.Pass(800, 1376, "small")]
    fine = (np.array([[100, 100, 111, 111], [300, 50, 420, 170]], np.float32), np.array([0.79, 0.9], np.float32))
    coarse = (np.array([[302, 52, 421, 168]], np.float32), np.array([0.7], np.float32))
    small = (np.array([[100.5, 99.5, 111.5, 111], [500, 20, 510, 31]], np.float32), np.array([0.85, 0.6], np.float32))
    boxes, scores = scales.combine(plan, [fine, coarse, small])
    assert scores.tolist() == pytest.approx([0.9, 0.79, 0.85, 0.6])  # the coarse duplicate gone, the small ones kept
    crops = [np.zeros((8, 8, 3), np.uint8)] * 4
    probs = np.full((4, 43), 0.001, np.float32)
    probs[0, 1], probs[1, 4], probs[2, 4], probs[3, 12] = 0.99, 0.95, 0.2, 0.9  # the small box's crop is doubted
    found = signs(boxes, scores, crops, probs, 0.25)
    assert [(f.class_id, round(f.confidence, 2)) for f in found] == [(4, 0.75), (1, 0.89), (12, 0.54)]
    probs[1, 4], probs[2, 4] = 0.2, 0.95  # now the fine box's crop is the doubted one
    assert [f.bbox[0] for f in signs(boxes, scores, crops, probs, 0.25)] == [100.5, 300, 500]


def test_a_small_sign_both_passes_see_stays_found() -> None:
    """Sample 00501 at half size: its two 10 px signs are seen by the fine and the small-sign pass.
    One's small-pass box scores higher, but the classifier doubts its crop: ranked on the localiser's
    score alone, that sign was lost."""
    from roadsigns.detector.model import SignDetector

    detector = SignDetector(backend="openvino")
    image = cv2.resize(cv2.imread(str(PHOTOS / "00501.jpg")), None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    assert [p.reports for p in detector.passes(*image.shape[:2])] == ["all", "large", "small"]
    found = detector.detect(image).signs
    truth = read_gt(PHOTOS / "gt.txt")["00501.jpg"]
    assert sum(1 for b in truth if (b.bottom - b.top) / 2 < 12) == 2
    for b in truth:
        half = tuple(v / 2 for v in b.xyxy)
        assert any(iou(s.bbox, half) >= 0.5 and s.class_id == b.class_id for s in found), b


def test_video_frames_run_the_small_sign_pass_only_when_asked(tmp_path: Path) -> None:
    """A video's 800x470 frames would get the small-sign pass, at half the rate; a distant sign is
    seen larger a few frames later, so `detect_frames` leaves it out unless told
    (ROADSIGNS_VIDEO_SMALL_SIGNS)."""
    from roadsigns.detector.model import SignDetector
    from roadsigns.detector.video import detect_frames
    from roadsigns.shared.settings import Settings
    from tests.test_video import write_video

    assert Settings().video_small_signs is False
    detector = SignDetector(backend="openvino")
    assert [p.reports for p in detector.passes(470, 800)] == ["all", "large", "small"]
    assert [p.reports for p in detector.passes(470, 800, small=False)] == ["all", "large"]
    small_pass = detector.passes(470, 800)[-1].shape
    video = write_video(tmp_path / "clip.mp4", PHOTOS / "00330.jpg", seconds=1.0, fps=5.0)
    shapes: list[tuple[int, ...]] = []
    run = detector.localiser

    def recorded(blob: np.ndarray) -> np.ndarray:
        shapes.append(tuple(blob.shape[2:]))
        return run(blob)

    detector.localiser = recorded  # type: ignore[assignment]
    without = detect_frames(video, detector, fps=5.0)
    assert shapes and small_pass not in shapes
    shapes.clear()
    with_small = detect_frames(video, detector, fps=5.0, small_signs=True)
    assert small_pass in shapes
    assert len(without.frames) == len(with_small.frames) == 5
    assert any(frame.signs for frame in without.frames)
    # Frames larger than ROADSIGNS_VIDEO_IMGSZ are shrunk to it, where a photo runs at up to 2048.
    assert Settings().video_imgsz == 1376 < detector.imgsz
    shapes.clear()
    detect_frames(video, detector, fps=5.0, max_side=640)
    assert (384, 640) in shapes and (480, 800) not in shapes


def test_coarse_pass_reports_only_large_signs() -> None:
    """At 384/1360 a 100 px sign is 28 px in the coarse input: the fine pass's business."""
    boxes = np.array([[0, 0, 100, 90], [0, 0, 140, 120], [0, 0, 30, 600]], np.float32)
    kept, scores = scales.large_only(boxes, np.array([0.9, 0.5, 0.4], np.float32), 384 / 1360)
    assert kept.tolist() == boxes[1:].tolist() and scores.tolist() == pytest.approx([0.5, 0.4])


def test_a_gtsdb_frame_costs_the_coarse_pass_no_extra_crops() -> None:
    """On a dashcam frame (signs 16-130 px) the coarse pass adds no proposal of its own: every
    box comes from the fine pass, so the classifier sees no more crops than without it."""
    from roadsigns.detector.model import SignDetector

    detector = SignDetector(backend="onnx")
    for photo in sorted(PHOTOS.glob("*.jpg")):
        image = cv2.imread(str(photo))
        fine_pass, coarse_pass = detector.passes(*image.shape[:2])
        fine, _ = detector._localise_at(image, *fine_pass.shape)
        assert len(detector._localise_at(image, *coarse_pass.shape)[0]) > 0  # the coarse pass did find things
        boxes, _ = detector.localise(image)
        assert {tuple(b) for b in boxes.tolist()} <= {tuple(b) for b in fine.tolist()}, photo.name


def test_merge_of_nothing() -> None:
    boxes, scores = scales.merge([np.zeros((0, 4), np.float32)] * 2, [np.zeros(0, np.float32)] * 2)
    assert boxes.shape == (0, 4) and scores.shape == (0,)


def test_recall_by_size_buckets_add_up_to_recall() -> None:
    gt = read_gt(PHOTOS / "gt.txt")
    # Predict every sign exactly but drop the smallest one.
    smallest = min((b for boxes in gt.values() for b in boxes), key=lambda b: b.bottom - b.top)
    preds = {name: [Pred(b.xyxy, b.class_id, 0.9) for b in boxes if b is not smallest] for name, boxes in gt.items()}
    buckets = recall_by_size(gt, preds)
    assert sum(v["signs"] for v in buckets.values()) == sum(len(v) for v in gt.values())
    height = smallest.bottom + 1 - smallest.top
    missed = next(k for k, v in buckets.items() if v["signs"] and v["recall"] < 1)
    lo, hi = {lab: (lo, hi) for lo, hi, lab in SIZE_BUCKETS}[missed]
    assert lo <= height and (hi is None or height < hi)
    report = detection_report(gt, preds)
    assert report["recall_by_size"] == buckets
    assert all(v["recall"] is None for v in buckets.values() if v["signs"] == 0)


def test_scenes_label_every_pasted_sign(tmp_path: Path) -> None:
    from roadsigns.training.scenes import build_scale_dataset

    gt = read_gt(PHOTOS / "gt.txt")
    n = build_scale_dataset(PHOTOS, gt, sorted(gt), tmp_path, zoomed=6, pasted=12, seed=3)
    assert n == 18
    heights = []
    for label in (tmp_path / "labels").glob("*.txt"):
        image = cv2.imread(str(tmp_path / "images" / f"{label.stem}.jpg"))
        h, w = image.shape[:2]
        rows = [list(map(float, line.split())) for line in label.read_text().splitlines()]
        assert rows or label.stem.startswith("paste"), label  # a zoomed view always holds its sign
        for cls, cx, cy, bw, bh in rows:
            assert cls == 0 and 0 < bw <= 1 and 0 < bh <= 1 and 0 <= cx <= 1 and 0 <= cy <= 1
            heights.append(bh * h)
            # A labelled box is on a sign, not on flat background.
            x1, y1 = int((cx - bw / 2) * w), int((cy - bh / 2) * h)
            patch = image[y1 : y1 + max(2, int(bh * h)), x1 : x1 + max(2, int(bw * w))]
            assert patch.std() > 3, label
    # Signs of many sizes: from a few pixels to a good part of the picture.
    assert min(heights) < 30 and max(heights) > 80


def test_ood_sets_are_valid_gtsdb_folders(tmp_path: Path) -> None:
    from roadsigns.shared import openset
    from roadsigns.training.scenes import CLOSEUP_NUMBERS, ood_sets

    gt = read_gt(PHOTOS / "gt.txt")
    summary = ood_sets(PHOTOS, gt, sorted(gt), tmp_path, seed=1)
    assert set(summary) == {"zoomed", "downscaled", "pasted", "large", "yellow", "closeup"}
    for name, counts in summary.items():
        folder = tmp_path / name
        boxes = read_gt(folder / "gt.txt")  # parses: the CLI's own reader
        assert sum(len(v) for v in boxes.values()) == counts["signs"] > 0
        for image_name, signs in boxes.items():
            h, w = cv2.imread(str(folder / "images" / image_name)).shape[:2]
            assert all(b.right < w and b.bottom < h for b in signs)
    # Half-size photos hold the same signs at half the height.
    full = sorted(b.bottom - b.top for v in gt.values() for b in v)
    half = sorted(b.bottom - b.top for v in read_gt(tmp_path / "downscaled" / "gt.txt").values() for b in v)
    assert np.allclose(np.array(half), np.array(full) / 2, atol=1)
    # The first four photos side by side, 2x2, at their own resolution: each sign where its photo
    # was put, the same pixels (JPEG aside).
    names = sorted(gt)[:4]
    assert summary["large"] == {"images": 1, "signs": sum(len(gt[n]) for n in names)}
    ((mosaic_name, mosaic),) = read_gt(tmp_path / "large" / "gt.txt").items()
    image = cv2.imread(str(tmp_path / "large" / "images" / mosaic_name)).astype(np.int16)
    assert image.shape == (1600, 2720, 3)
    placed = []
    for k, name in enumerate(names):
        x0, y0 = 1360 * (k % 2), 800 * (k // 2)
        photo = cv2.imread(str(PHOTOS / name)).astype(np.int16)
        for b in gt[name]:
            placed.append((b.left + x0, b.top + y0, b.right + x0, b.bottom + y0, b.class_id))
            sign = image[b.top + y0 : b.bottom + y0 + 1, b.left + x0 : b.right + x0 + 1]
            assert np.abs(sign - photo[b.top : b.bottom + 1, b.left : b.right + 1]).mean() < 6
    assert sorted(placed) == sorted((b.left, b.top, b.right, b.bottom, b.class_id) for b in mosaic)
    # Yellow: the same photos and boxes; the signs of classes other countries paint yellow-faced turn
    # yellow (more yellow pixels: red and green well above blue), the others do not.
    from roadsigns.training.classifier import YELLOW_FACED

    assert read_gt(tmp_path / "yellow" / "gt.txt") == gt
    painted = {True: 0, False: 0}
    for name, signs in gt.items():
        before = cv2.imread(str(PHOTOS / name)).astype(np.int16)
        after = cv2.imread(str(tmp_path / "yellow" / "images" / name)).astype(np.int16)
        for b in signs:
            area = np.s_[b.top : b.bottom + 1, b.left : b.right + 1]
            grew = _yellow_share(after[area]) - _yellow_share(before[area])
            if b.class_id not in YELLOW_FACED:
                assert grew < 0.02, (name, b, grew)
            elif b.bottom - b.top >= 24:  # a 20 px sign's dim face may be too dark to count as white
                assert grew > 0.1, (name, b, grew)
            painted[b.class_id in YELLOW_FACED] += 1
    assert painted[True] and painted[False]
    # Close-ups: two phone-sized pictures per photo, each one speed limit filling 15-85 % of its
    # height; numbers no class carries are written class -1 with their text, the others by class.
    closeups = read_gt(tmp_path / "closeup" / "gt.txt")
    assert summary["closeup"] == {"images": 2 * len(gt), "signs": 2 * len(gt)}
    for image_name, (sign,) in closeups.items():
        h, w = cv2.imread(str(tmp_path / "closeup" / "images" / image_name)).shape[:2]
        assert 400 <= max(h, w) <= 1024 and 0.12 <= (sign.bottom + 1 - sign.top) / h <= 0.9
        assert sign.category == "prohibitory" and sign.expected_text in CLOSEUP_NUMBERS
        assert (sign.class_id == -1) == (sign.expected_text not in openset.numbered_classes())


def _yellow_share(bgr: np.ndarray) -> float:
    """The share of pixels whose red and green both exceed their blue by a good margin."""
    return float(((np.minimum(bgr[..., 1], bgr[..., 2]) - bgr[..., 0]) > 60).mean())


def _close_up(name: str, box: tuple[int, int, int, int], fill: float) -> tuple[np.ndarray, tuple[int, ...]]:
    """A window of a sample photo in which its sign fills `fill` of the height, at native resolution."""
    photo = cv2.imread(str(PHOTOS / name))
    x1, y1, x2, y2 = box
    height = round((y2 - y1) / fill)
    width = round(height * 4 / 3)
    left, top = max(0, (x1 + x2) // 2 - width // 2), max(0, (y1 + y2) // 2 - height // 2)
    window = photo[top : top + height, left : left + width]
    return window, (x1 - left, y1 - top, x2 - left, y2 - top)


@pytest.fixture(scope="module")
def pipeline():  # type: ignore[no-untyped-def]
    """The shipped models in one process, as `roadsigns analyze` runs them."""
    from roadsigns.cli.pipeline import Pipeline
    from roadsigns.shared.settings import Settings

    return Pipeline(Settings())


@pytest.mark.parametrize(("fill", "text"), [(0.35, "100"), (0.7, "100")])
def test_close_up_sign_is_found_named_and_read(pipeline, fill: float, text: str) -> None:  # type: ignore[no-untyped-def]
    """A sign filling a third or two thirds of a small photo (a phone close-up) is found and read.

    With the old fixed 832x1376 input such a photo was blown up to a sign of 300-800 px,
    and nothing was found.
    """
    image, box = _close_up("00121.jpg", (91, 308, 186, 417), fill)
    ok, data = cv2.imencode(".jpg", image)
    assert ok
    analysis = pipeline.analyze(data.tobytes())
    hits = [s for s in analysis.signs if iou(s.bbox, box) >= 0.5]
    assert hits, (image.shape, [(s.bbox, s.confidence) for s in analysis.signs])
    assert hits[0].class_id == 7 and hits[0].text == text
    # Nothing else in so small a picture is a sign.
    assert len(analysis.signs) == 1


def test_letterbox_keeps_a_row_of_an_extreme_strip() -> None:
    """A 20000x16 strip shrinks to 384 wide in the coarse pass: its height must not round to 0."""
    from roadsigns.detector.preprocess import letterbox

    strip = np.full((16, 20000, 3), 200, np.uint8)
    for height, width, _ in scales.plan(16, 20000, 1376):
        blob, box = letterbox(strip, height, width)
        assert blob.shape == (1, 3, height, width) and box.scale > 0
