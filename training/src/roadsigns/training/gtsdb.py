"""Reading GTSDB-format ground truth and turning photos into YOLO training tiles.

GTSDB signs are small (median 37 px high in a 1360x800 photo), so the detector is
trained on native-resolution tiles rather than on whole photos shrunk to the model's
input size: a sign keeps the pixels it will have at inference time.
"""

from __future__ import annotations

import random
from pathlib import Path

import cv2
import numpy as np

from roadsigns.cli.groundtruth import Box, read_gt

__all__ = ["Box", "read_gt", "split_names", "build_tile_dataset"]


def split_names(names: list[str], val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Split photo names (never individual signs) into train and validation."""
    ordered = sorted(names)
    random.Random(seed).shuffle(ordered)
    n_val = round(len(ordered) * val_fraction)
    return sorted(ordered[n_val:]), sorted(ordered[:n_val])


def _tile_origins(img_w: int, img_h: int, boxes: list[Box], size: int, rng: random.Random) -> list[tuple[int, int]]:
    """Two randomly shifted tiles around each sign and one random tile per photo."""
    origins = []
    for b in boxes:
        cx, cy = (b.left + b.right) / 2, (b.top + b.bottom) / 2
        for _ in range(2):
            x = int(cx - rng.uniform(0.15, 0.85) * size)
            y = int(cy - rng.uniform(0.15, 0.85) * size)
            origins.append((x, y))
    origins.append((rng.randint(0, max(0, img_w - size)), rng.randint(0, max(0, img_h - size))))
    return [(min(max(0, x), max(0, img_w - size)), min(max(0, y), max(0, img_h - size))) for x, y in origins]


def write_tile(
    image: np.ndarray,
    boxes: list[Box],
    x0: int,
    y0: int,
    size: int,
    min_inside: float,
    single_class: bool,
    out_img: Path,
    out_lbl: Path,
) -> None:
    """Cut one tile, grey out signs mostly outside it, write a YOLO label file."""
    tile = image[y0 : y0 + size, x0 : x0 + size].copy()
    h, w = tile.shape[:2]
    lines = []
    for b in boxes:
        x1, y1, x2, y2 = b.left - x0, b.top - y0, b.right + 1 - x0, b.bottom + 1 - y0
        area = (x2 - x1) * (y2 - y1)
        cx1, cy1, cx2, cy2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
        if cx2 <= cx1 or cy2 <= cy1:
            continue
        inside = (cx2 - cx1) * (cy2 - cy1) / area
        if inside < min_inside:
            # A sign cut in half teaches the model to fire on fragments: hide it.
            tile[cy1:cy2, cx1:cx2] = 114
            continue
        cls = 0 if single_class else b.class_id
        lines.append(
            f"{cls} {(cx1 + cx2) / 2 / w:.6f} {(cy1 + cy2) / 2 / h:.6f} {(cx2 - cx1) / w:.6f} {(cy2 - cy1) / h:.6f}"
        )
    cv2.imwrite(str(out_img), tile, [cv2.IMWRITE_JPEG_QUALITY, 95])
    out_lbl.write_text("\n".join(lines) + ("\n" if lines else ""))


def build_tile_dataset(
    images_dir: Path,
    gt: dict[str, list[Box]],
    names: list[str],
    out_dir: Path,
    size: int,
    min_inside: float,
    single_class: bool,
    seed: int,
) -> int:
    """Write `out_dir/images/*.jpg` and `out_dir/labels/*.txt`; return the tile count."""
    rng = random.Random(seed)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    (out_dir / "labels").mkdir(parents=True, exist_ok=True)
    count = 0
    for name in names:
        image = cv2.imread(str(images_dir / name))
        if image is None:
            raise ValueError(f"cannot read image {images_dir / name}")
        boxes = gt.get(name, [])
        h, w = image.shape[:2]
        for i, (x0, y0) in enumerate(_tile_origins(w, h, boxes, size, rng)):
            stem = f"{Path(name).stem}_{i}"
            write_tile(
                image,
                boxes,
                x0,
                y0,
                size,
                min_inside,
                single_class,
                out_dir / "images" / f"{stem}.jpg",
                out_dir / "labels" / f"{stem}.txt",
            )
            count += 1
    return count


def write_full_photo_split(
    images_dir: Path, gt: dict[str, list[Box]], names: list[str], out_dir: Path, single_class: bool
) -> None:
    """Validation on whole photos, linked rather than copied, with YOLO labels."""
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    (out_dir / "labels").mkdir(parents=True, exist_ok=True)
    for name in names:
        src = (images_dir / name).resolve()
        dst = out_dir / "images" / name
        if not dst.exists():
            dst.symlink_to(src)
        h, w = cv2.imread(str(src)).shape[:2]
        lines = []
        for b in gt.get(name, []):
            cls = 0 if single_class else b.class_id
            lines.append(
                f"{cls} {(b.left + b.right + 1) / 2 / w:.6f} {(b.top + b.bottom + 1) / 2 / h:.6f} "
                f"{(b.right + 1 - b.left) / w:.6f} {(b.bottom + 1 - b.top) / h:.6f}"
            )
        (out_dir / "labels" / f"{Path(name).stem}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
