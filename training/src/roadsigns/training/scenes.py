"""Detector training photos at every scale, made from GTSDB photos alone.

GTSDB is one camera: 1360x800 dashcam frames whose signs are 16 to 130 px high. A
localiser trained only on those finds nothing in a phone close-up where a sign fills
half the frame. Two kinds of picture widen what it sees:

- **zoomed views**: a window cut around a real sign so that the sign fills 5-60 % of the
  window's height, shrunk or enlarged to a random output size. The window never grows
  a sign more than `MAX_UPSCALE` times: a 37 px sign blown up to 400 px is a blur, not
  a close-up.
- **pasted signs**: signs drawn here at high resolution (Vienna-convention shapes:
  red-ring discs with any number, pictogram discs, no-entry, triangles with white or
  yellow faces, give way, octagons with any word, blue discs, priority diamonds, blue
  information squares) and real GTSRB crops cut to their sign's shape, pasted onto
  views of GTSDB photos at 12 px to 90 % of the frame, with perspective, blur, colour
  cast, low light, JPEG and partial occlusion.

The same functions write the out-of-domain evaluation sets (`ood_sets`) from held-out
photos and a type face training never uses, so the figures they give are not trained on.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from roadsigns.cli.groundtruth import Box
from roadsigns.training.readers import _glyph_mask, random_number, random_word

Glyphs = Callable[[str, np.random.Generator, Path], Image.Image]
MAX_UPSCALE = 2.5  # a zoomed view never enlarges the photo more than this
_CANVAS = 256  # pasted signs are drawn at this size, then warped and shrunk
# Characters that stand in for pictograms: any dark shape inside a sign's face.
_PICTOGRAMS = "!?↑←→↰↱⇧⇦⇨★♦♣♠▲●■⚠✈♨☂ABHKMPTXZ"
KINDS = (
    "speed",
    "prohibitory",
    "no_entry",
    "end",
    "danger",
    "give_way",
    "stop",
    "mandatory",
    "priority",
    "info",
)


@dataclass(frozen=True)
class Scene:
    """One picture: BGR pixels, its sign boxes (x1, y1, x2, y2, pixel edges) and their
    classes (-1 where a drawn sign has none of the 43)."""

    image: np.ndarray
    boxes: list[tuple[float, float, float, float]]
    classes: list[int] = field(default_factory=list)
    texts: dict[int, str] = field(default_factory=dict)  # box index -> its text, for class-less signs a gt file names


def _red(rng: np.random.Generator) -> tuple[int, int, int]:
    return (int(rng.uniform(160, 245)), int(rng.uniform(0, 50)), int(rng.uniform(10, 60)))


def _white(rng: np.random.Generator) -> tuple[int, int, int]:
    w = int(rng.uniform(200, 255))
    return (w, w, w - int(rng.uniform(0, 12)))


def _blue(rng: np.random.Generator) -> tuple[int, int, int]:
    return (int(rng.uniform(0, 40)), int(rng.uniform(60, 120)), int(rng.uniform(150, 220)))


def _yellow(rng: np.random.Generator) -> tuple[int, int, int]:
    return (int(rng.uniform(220, 255)), int(rng.uniform(180, 220)), int(rng.uniform(0, 40)))


def _paste_mark(
    canvas: Image.Image, mark: Image.Image, centre: tuple[float, float], height: float, width_cap: float, ink: tuple
) -> None:
    """A white-on-black mask (`mark`) scaled to `height` (and at most `width_cap` wide), pasted in `ink`."""
    w = min(width_cap, mark.width * height / max(1, mark.height))
    h = min(height, w * mark.height / max(1, mark.width)) if w == width_cap else height
    mark = mark.resize((max(1, int(w)), max(1, int(h))), Image.Resampling.LANCZOS)
    canvas.paste(ink, (int(centre[0] - w / 2), int(centre[1] - h / 2)), mark)


def _pictogram(rng: np.random.Generator, font_dir: Path) -> Image.Image:
    char = _PICTOGRAMS[int(rng.integers(0, len(_PICTOGRAMS)))]
    for name in ("DejaVuSans-Bold.ttf", "DejaVuSans.ttf"):
        font = ImageFont.truetype(str(font_dir / name), 120)
        left, top, right, bottom = font.getbbox(char)
        if right > left and bottom > top:
            mask = Image.new("L", (right - left + 4, bottom - top + 4), 0)
            ImageDraw.Draw(mask).text((2 - left, 2 - top), char, fill=255, font=font)
            return mask
    return Image.new("L", (10, 10), 255)


def _polygon(n: int, radius: float, turn: float, c: float = _CANVAS / 2) -> list[tuple[float, float]]:
    angles = [turn + 2 * math.pi * k / n for k in range(n)]
    return [(c + radius * math.cos(a), c + radius * math.sin(a)) for a in angles]


def render(
    kind: str, rng: np.random.Generator, font_dir: Path, text: str | None = None, glyphs: Glyphs = _glyph_mask
) -> np.ndarray:
    """One sign of `kind`, drawn large: `_CANVAS` x `_CANVAS` RGBA uint8, alpha = the sign's outline.

    `text`: the number on a speed limit or the word on an octagon (default: random);
    `glyphs` draws it (default: the readers' training faces).
    """
    rgb = Image.new("RGB", (_CANVAS, _CANVAS), (0, 0, 0))
    alpha = Image.new("L", (_CANVAS, _CANVAS), 0)
    draw, mask = ImageDraw.Draw(rgb), ImageDraw.Draw(alpha)
    c, r = _CANVAS / 2, _CANVAS / 2 - 2
    disc = [c - r, c - r, c + r, c + r]

    def ring(inner_frac: float, face: tuple[int, int, int], rim: tuple[int, int, int]) -> float:
        draw.ellipse(disc, fill=_white(rng))
        mask.ellipse(disc, fill=255)
        outer = r * rng.uniform(0.93, 0.98)
        draw.ellipse([c - outer, c - outer, c + outer, c + outer], fill=rim)
        inner = outer * inner_frac
        draw.ellipse([c - inner, c - inner, c + inner, c + inner], fill=face)
        return inner

    if kind == "speed":
        inner = ring(rng.uniform(0.72, 0.84), _white(rng), _red(rng))
        number = text or (random_number(rng) if rng.random() < 0.5 else str(int(rng.integers(1, 14)) * 10))
        ink = int(rng.uniform(0, 50))
        squeeze = rng.uniform(0.6, 1.0) if len(number) <= 2 else rng.uniform(0.45, 0.8)
        mark = glyphs(number, rng, font_dir)
        mark = mark.resize((max(1, int(mark.width * squeeze)), mark.height))
        _paste_mark(rgb, mark, (c, c), inner * rng.uniform(0.8, 1.15), 1.7 * inner, (ink,) * 3)
    elif kind in ("prohibitory", "end"):
        if kind == "prohibitory":
            inner = ring(rng.uniform(0.72, 0.84), _white(rng), _red(rng))
            mark = _pictogram(rng, font_dir)
            _paste_mark(rgb, mark, (c, c), inner * rng.uniform(0.7, 1.1), 1.5 * inner, (20, 20, 20))
        else:  # restriction ends: white disc, grey or black diagonal stripes
            draw.ellipse(disc, fill=_white(rng))
            mask.ellipse(disc, fill=255)
            grey = int(rng.uniform(0, 120))
            for k in range(-2, 3):
                off = k * r * 0.12
                stripe = [(c - 0.7 * r + off, c + 0.7 * r + off), (c + 0.7 * r + off, c - 0.7 * r + off)]
                draw.line(stripe, fill=(grey,) * 3, width=max(2, int(r * 0.05)))
    elif kind == "no_entry":
        draw.ellipse(disc, fill=_red(rng))
        mask.ellipse(disc, fill=255)
        bar = r * rng.uniform(0.16, 0.24)
        draw.rectangle([c - 0.75 * r, c - bar, c + 0.75 * r, c + bar], fill=_white(rng))
    elif kind in ("danger", "give_way"):
        up = kind == "danger"
        turn = -math.pi / 2 if up else math.pi / 2
        outer = _polygon(3, r, turn)
        draw.polygon(outer, fill=_white(rng))
        mask.polygon(outer, fill=255)
        draw.polygon(_polygon(3, r * 0.93, turn), fill=_red(rng))
        face = _yellow(rng) if rng.random() < 0.3 else _white(rng)
        draw.polygon(_polygon(3, r * rng.uniform(0.55, 0.68), turn), fill=face)
        if up:
            _paste_mark(rgb, _pictogram(rng, font_dir), (c, c + r * 0.12), r * 0.45, r * 0.6, (20, 20, 20))
    elif kind == "stop":
        turn = math.pi / 8
        draw.polygon(_polygon(8, r, turn), fill=_white(rng))
        mask.polygon(_polygon(8, r, turn), fill=255)
        draw.polygon(_polygon(8, r * 0.93, turn), fill=_red(rng))
        word = text or random_word(rng)
        _paste_mark(rgb, glyphs(word, rng, font_dir), (c, c), r * rng.uniform(0.35, 0.55), 1.6 * r, _white(rng))
    elif kind == "mandatory":
        draw.ellipse(disc, fill=_white(rng))
        mask.ellipse(disc, fill=255)
        inner = r * rng.uniform(0.93, 0.97)
        draw.ellipse([c - inner, c - inner, c + inner, c + inner], fill=_blue(rng))
        _paste_mark(rgb, _pictogram(rng, font_dir), (c, c), inner * rng.uniform(0.8, 1.1), 1.4 * inner, _white(rng))
    elif kind == "priority":
        outer = _polygon(4, r, 0.0)
        draw.polygon(outer, fill=_white(rng))
        mask.polygon(outer, fill=255)
        draw.polygon(_polygon(4, r * 0.62, 0.0), fill=_yellow(rng))
    elif kind == "info":
        half = r * rng.uniform(0.8, 0.97)
        box = [c - half, c - r * 0.97, c + half, c + r * 0.97]
        draw.rounded_rectangle(box, radius=int(r * 0.08), fill=_white(rng))
        mask.rounded_rectangle(box, radius=int(r * 0.08), fill=255)
        draw.rounded_rectangle([box[0] + 5, box[1] + 5, box[2] - 5, box[3] - 5], radius=int(r * 0.06), fill=_blue(rng))
        _paste_mark(rgb, _pictogram(rng, font_dir), (c, c), r * 1.1, 1.5 * half, _white(rng))
    else:
        raise ValueError(f"unknown sign kind {kind!r}")
    return np.dstack([np.asarray(rgb), np.asarray(alpha)])


_SHAPE_OF_CLASS = {12: "priority", 13: "give_way", 14: "stop"}


def gtsrb_sign(crop_rgb: np.ndarray, class_id: int, danger: bool) -> np.ndarray:
    """A 32x32 GTSRB crop cut to its sign's outline: RGBA at `_CANVAS` px (for pasting small only).

    GTSRB crops keep a margin of about 10 % round the sign; the outline is drawn inside it.
    """
    big = cv2.resize(crop_rgb, (_CANVAS, _CANVAS), interpolation=cv2.INTER_CUBIC)
    alpha = Image.new("L", (_CANVAS, _CANVAS), 0)
    mask = ImageDraw.Draw(alpha)
    r = _CANVAS * 0.41
    shape = _SHAPE_OF_CLASS.get(class_id, "danger" if danger else "disc")
    if shape == "disc":
        mask.ellipse([_CANVAS / 2 - r, _CANVAS / 2 - r, _CANVAS / 2 + r, _CANVAS / 2 + r], fill=255)
    elif shape == "danger":
        mask.polygon(_polygon(3, r * 1.1, -math.pi / 2, _CANVAS / 2 + r * 0.1), fill=255)
    elif shape == "give_way":
        mask.polygon(_polygon(3, r * 1.1, math.pi / 2, _CANVAS / 2 - r * 0.1), fill=255)
    elif shape == "stop":
        mask.polygon(_polygon(8, r, math.pi / 8), fill=255)
    else:
        mask.polygon(_polygon(4, r * 1.05, 0.0), fill=255)
    return np.dstack([big, np.asarray(alpha)])


def _warp(rgba: np.ndarray, side: int, rng: np.random.Generator) -> np.ndarray:
    """Perspective (a sign seen from the side of the road), rotation, then shrink to `side` px."""
    n = rgba.shape[0]
    src = np.float32([[0, 0], [n, 0], [n, n], [0, n]])
    squash = rng.uniform(0.0, 0.35) if rng.random() < 0.6 else 0.0  # yaw: one side nearer
    dst = src.copy()
    if rng.random() < 0.5:
        dst[[1, 2], 0] -= squash * n  # right edge nearer the middle
        dst[1, 1] += squash * n * 0.1
        dst[2, 1] -= squash * n * 0.1
    else:
        dst[[0, 3], 0] += squash * n
        dst[0, 1] += squash * n * 0.1
        dst[3, 1] -= squash * n * 0.1
    dst += rng.uniform(-0.03, 0.03, (4, 2)).astype(np.float32) * n
    rot = np.vstack([cv2.getRotationMatrix2D((n / 2, n / 2), rng.uniform(-10, 10), 1.0), [0, 0, 1]])
    m = rot @ cv2.getPerspectiveTransform(src, dst)
    out = cv2.warpPerspective(rgba, m, (n, n), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0, 0))
    ys, xs = np.nonzero(out[..., 3] > 127)
    if len(ys) == 0:
        return cv2.resize(out, (side, side), interpolation=cv2.INTER_AREA)
    out = out[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    scale = side / max(out.shape[:2])
    size = (max(2, round(out.shape[1] * scale)), max(2, round(out.shape[0] * scale)))
    return cv2.resize(out, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


def _light(sign_rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Colour cast, gain and blur on the sign alone: faded paint, shade, a cheap lens."""
    x = sign_rgb.astype(np.float32)
    x *= rng.uniform(0.8, 1.15, 3)  # cast
    x = x * rng.uniform(0.35, 1.15) + rng.uniform(-25, 20)
    if rng.random() < 0.6:
        sigma = rng.uniform(0.3, 1.5) * max(1.0, sign_rgb.shape[0] / 80)
        x = cv2.GaussianBlur(x, (0, 0), sigma)
    return np.clip(x, 0, 255)


def paste(background: np.ndarray, rgba: np.ndarray, x: int, y: int, rng: np.random.Generator) -> tuple[float, ...]:
    """Alpha-blend a warped sign (RGBA) onto a BGR background at (x, y); return its box.

    Now and then a bar (a pole, a branch) crosses part of it: signs are often partly hidden.
    """
    h, w = rgba.shape[:2]
    region = background[y : y + h, x : x + w]
    a = (rgba[..., 3:4].astype(np.float32) / 255.0)[: region.shape[0], : region.shape[1]]
    sign = _light(rgba[..., :3][..., ::-1], rng)[: region.shape[0], : region.shape[1]]
    region[:] = (a * sign + (1 - a) * region).astype(np.uint8)
    if rng.random() < 0.15:  # occlusion of at most a third
        side = int(rng.integers(0, 2))
        cover = rng.uniform(0.1, 0.33)
        colour = tuple(int(v) for v in rng.integers(20, 200, 3))
        if side == 0:
            region[:, : int(cover * region.shape[1])] = colour
        else:
            region[int((1 - cover) * region.shape[0]) :, :] = colour
    ys, xs = np.nonzero(a[..., 0] > 0.5)
    return (float(x + xs.min()), float(y + ys.min()), float(x + xs.max() + 1), float(y + ys.max() + 1))


def _overlaps(box: tuple[float, ...], others: list[tuple[float, ...]], pad: float = 4) -> bool:
    return any(
        box[0] < o[2] + pad and o[0] < box[2] + pad and box[1] < o[3] + pad and o[1] < box[3] + pad for o in others
    )


def _camera(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The whole picture: low light now and then, sensor noise, JPEG."""
    x = image.astype(np.float32)
    if rng.random() < 0.25:
        x = 255 * (x / 255) ** rng.uniform(1.3, 2.2) * rng.uniform(0.5, 0.9)  # dusk
    if rng.random() < 0.5:
        x += rng.normal(0, rng.uniform(1, 6), x.shape)
    out = np.clip(x, 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(35, 96))])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else out


def _window(
    img_w: int, img_h: int, out_w: int, out_h: int, scale: float, rng: np.random.Generator, around: Box | None
) -> tuple[int, int, int, int]:
    """A window of the photo that, resized by `scale`, gives an out_w x out_h picture."""
    win_w, win_h = min(img_w, round(out_w / scale)), min(img_h, round(out_h / scale))
    if around is None:
        x0, y0 = int(rng.integers(0, img_w - win_w + 1)), int(rng.integers(0, img_h - win_h + 1))
    else:
        bw, bh = around.right + 1 - around.left, around.bottom + 1 - around.top
        x0 = int(around.left - rng.uniform(0.05, 0.95) * max(0, win_w - bw))
        y0 = int(around.top - rng.uniform(0.05, 0.95) * max(0, win_h - bh))
        x0, y0 = min(max(0, x0), img_w - win_w), min(max(0, y0), img_h - win_h)
    return x0, y0, win_w, win_h


def _view(image: np.ndarray, boxes: list[Box], x0: int, y0: int, win_w: int, win_h: int, scale: float) -> Scene:
    """Cut and resize a window; signs mostly outside it are greyed out, the rest labelled."""
    crop = image[y0 : y0 + win_h, x0 : x0 + win_w].copy()
    labelled, classes = [], []
    for b in boxes:
        x1, y1, x2, y2 = b.left - x0, b.top - y0, b.right + 1 - x0, b.bottom + 1 - y0
        cx1, cy1, cx2, cy2 = max(0, x1), max(0, y1), min(win_w, x2), min(win_h, y2)
        if cx2 <= cx1 or cy2 <= cy1:
            continue
        if (cx2 - cx1) * (cy2 - cy1) < 0.6 * (x2 - x1) * (y2 - y1):
            crop[cy1:cy2, cx1:cx2] = 114  # half a sign teaches the model to fire on fragments
            continue
        labelled.append((cx1 * scale, cy1 * scale, cx2 * scale, cy2 * scale))
        classes.append(b.class_id)
    size = (max(1, round(win_w * scale)), max(1, round(win_h * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return Scene(cv2.resize(crop, size, interpolation=interp), labelled, classes)


def _output_shape(rng: np.random.Generator) -> tuple[int, int]:
    """A picture's (width, height): phone portrait or landscape, square, dashcam 16:9; 240-1024 px long side."""
    long_side = int(rng.uniform(240, 1024))
    aspect = [4 / 3, 3 / 4, 1.0, 16 / 9, 3 / 2][int(rng.integers(0, 5))]
    return (long_side, round(long_side / aspect)) if aspect >= 1 else (round(long_side * aspect), long_side)


def zoomed_view(
    image: np.ndarray, boxes: list[Box], rng: np.random.Generator, pick_first: bool = False
) -> Scene | None:
    """A window around one real sign (random, or the first), scaled so it fills 5-60 % of the picture's height."""
    if not boxes:
        return None
    target = boxes[0 if pick_first else int(rng.integers(0, len(boxes)))]
    sign_h = target.bottom + 1 - target.top
    out_w, out_h = _output_shape(rng)
    fill = math.exp(rng.uniform(math.log(0.05), math.log(0.6)))
    scale = min(MAX_UPSCALE, fill * out_h / sign_h)
    img_h, img_w = image.shape[:2]
    x0, y0, win_w, win_h = _window(img_w, img_h, out_w, out_h, scale, rng, target)
    return _view(image, boxes, x0, y0, win_w, win_h, scale)


Draw = Callable[[np.random.Generator, int], tuple[np.ndarray, int]]


def training_signs(font_dir: Path, crops: tuple[np.ndarray, np.ndarray] | None) -> Draw:
    """What training pastes: below 72 px, half the time a real GTSRB crop; else a drawn sign of any kind.

    (GTSRB crops are 32 px: enlarged further they are a blur no camera makes.)
    """
    from roadsigns.shared import classes

    def draw(rng: np.random.Generator, side: int) -> tuple[np.ndarray, int]:
        if crops is not None and side <= 72 and rng.random() < 0.5:
            images, labels = crops
            k = int(rng.integers(0, len(images)))
            cls = int(labels[k])
            return gtsrb_sign(images[k], cls, classes.get(cls).category == "danger"), cls
        return render(KINDS[int(rng.integers(0, len(KINDS)))], rng, font_dir), -1

    return draw


def pasted_scene(image: np.ndarray, boxes: list[Box], rng: np.random.Generator, draw: Draw, most: int = 3) -> Scene:
    """A view of a photo (any scale) with one to `most` signs pasted at 12 px to 90 % of its height."""
    out_w, out_h = _output_shape(rng)
    img_h, img_w = image.shape[:2]
    scale = max(out_w / img_w, out_h / img_h, rng.uniform(0.2, 1.5))
    scale = min(scale, MAX_UPSCALE)
    x0, y0, win_w, win_h = _window(img_w, img_h, out_w, out_h, scale, rng, None)
    scene = _view(image, boxes, x0, y0, win_w, win_h, scale)
    picture, labelled, classes = scene.image, list(scene.boxes), list(scene.classes)
    ph, pw = picture.shape[:2]
    for _ in range(int(rng.integers(1, most + 1))):
        side = int(math.exp(rng.uniform(math.log(12), math.log(max(13, 0.9 * min(ph, pw))))))
        rgba, cls = draw(rng, side)
        sign = _warp(rgba, side, rng)
        sh, sw = sign.shape[:2]
        if sw >= pw or sh >= ph:
            continue
        for _try in range(10):
            x, y = int(rng.integers(0, pw - sw)), int(rng.integers(0, ph - sh))
            if not _overlaps((x, y, x + sw, y + sh), labelled):
                labelled.append(paste(picture, sign, x, y, rng))
                classes.append(cls)
                break
    return Scene(_camera(picture, rng), labelled, classes)


def write_yolo(scene: Scene, stem: str, out_dir: Path) -> None:
    """`out_dir/images/STEM.jpg` and its one-class YOLO label file."""
    h, w = scene.image.shape[:2]
    lines = [
        f"0 {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}"
        for x1, y1, x2, y2 in scene.boxes
    ]
    cv2.imwrite(str(out_dir / "images" / f"{stem}.jpg"), scene.image, [cv2.IMWRITE_JPEG_QUALITY, 92])
    (out_dir / "labels" / f"{stem}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))


def build_scale_dataset(
    images_dir: Path,
    gt: dict[str, list[Box]],
    names: list[str],
    out_dir: Path,
    zoomed: int,
    pasted: int,
    seed: int,
    crops: tuple[np.ndarray, np.ndarray] | None = None,
) -> int:
    """`zoomed` zoomed views and `pasted` pasted-sign scenes from the photos `names`, as YOLO files."""
    from roadsigns.training.readers import _font_dir

    rng = np.random.default_rng(seed)
    font_dir = _font_dir()
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    (out_dir / "labels").mkdir(parents=True, exist_ok=True)
    with_signs = [n for n in names if gt.get(n)]
    cache: dict[str, np.ndarray] = {}

    def photo(name: str) -> np.ndarray:
        if name not in cache:
            if len(cache) > 64:
                cache.clear()
            image = cv2.imread(str(images_dir / name))
            if image is None:
                raise ValueError(f"cannot read image {images_dir / name}")
            cache[name] = image
        return cache[name]

    count = 0
    for i in range(zoomed):
        name = with_signs[int(rng.integers(0, len(with_signs)))]
        scene = zoomed_view(photo(name), gt[name], rng)
        if scene is not None:
            write_yolo(Scene(_camera(scene.image, rng), scene.boxes), f"zoom_{i:05d}", out_dir)
            count += 1
    draw = training_signs(font_dir, crops)
    for i in range(pasted):
        name = names[int(rng.integers(0, len(names)))]
        write_yolo(pasted_scene(photo(name), gt.get(name, []), rng, draw), f"paste_{i:05d}", out_dir)
        count += 1
    return count


def duplex_glyphs(text: str, rng: np.random.Generator, font_dir: Path) -> Image.Image:
    """Text in OpenCV's HERSHEY_DUPLEX, a face no model here is trained on (see readers._HERSHEY)."""
    thickness = int(rng.integers(5, 10))
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_DUPLEX, 3.0, thickness)
    canvas = np.zeros((h + base + 2 * thickness, w + 2 * thickness), np.uint8)
    cv2.putText(canvas, text, (thickness, h + thickness), cv2.FONT_HERSHEY_DUPLEX, 3.0, 255, thickness, cv2.LINE_AA)
    ys, xs = np.nonzero(canvas)
    return Image.fromarray(canvas[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1])


def _write_gtsdb(scenes: list[tuple[str, Scene]], out_dir: Path) -> dict[str, int]:
    """Pictures as JPEGs in OUT/images and their labelled signs in OUT/gt.txt (GTSDB format)."""
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for name, scene in scenes:
        cv2.imwrite(str(out_dir / "images" / name), scene.image, [cv2.IMWRITE_JPEG_QUALITY, 92])
        h, w = scene.image.shape[:2]
        for k, ((x1, y1, x2, y2), cls) in enumerate(zip(scene.boxes, scene.classes, strict=True)):
            text = scene.texts.get(k)
            if cls >= 0 or text:  # inclusive pixel edges, inside the picture
                right, bottom = min(w, math.ceil(x2)) - 1, min(h, math.ceil(y2)) - 1
                tail = f";{text}" if cls < 0 else ""  # a class-less sign is known by its text (groundtruth.py)
                lines.append(f"{name};{int(x1)};{int(y1)};{right};{bottom};{cls}{tail}")
    (out_dir / "gt.txt").write_text("\n".join(lines) + "\n")
    return {"images": len(scenes), "signs": len(lines)}


# The numbers a close-up's speed limit carries: every plausible limit (openset.PLAUSIBLE_SPEED),
# GTSRB's eight and the eighteen no class carries (5, 10, 15, 25, 35, 40, 45, ..., 110, 130).
CLOSEUP_NUMBERS = tuple(str(v) for v in range(5, 135, 5))


def closeup_scene(image: np.ndarray, boxes: list[Box], rng: np.random.Generator, number: str) -> Scene:
    """A phone close-up: a 400-1,024 px picture (mostly portrait) of a street, one speed limit
    carrying `number` in HERSHEY_DUPLEX in front, 15-85 % of the picture's height.

    The background is a window of a held-out photo at 0.4-1.5x that holds none of its own signs
    where one can be found (else those signs are greyed out): the set measures the close-up sign.
    """
    from roadsigns.shared import openset

    long_side, portrait = int(rng.uniform(400, 1024)), rng.random() < 0.7
    out_w, out_h = (round(long_side * 3 / 4), long_side) if portrait else (long_side, round(long_side * 3 / 4))
    img_h, img_w = image.shape[:2]
    scale = min(MAX_UPSCALE, max(out_w / img_w, out_h / img_h, rng.uniform(0.4, 1.5)))
    for _try in range(20):
        x0, y0, win_w, win_h = _window(img_w, img_h, out_w, out_h, scale, rng, None)
        window = (x0, y0, x0 + win_w, y0 + win_h)
        if not _overlaps(window, [b.xyxy for b in boxes], pad=0):
            break
    picture = image[y0 : y0 + win_h, x0 : x0 + win_w].copy()
    for b in boxes:  # the window's own signs, where it could not avoid them
        picture[max(0, b.top - y0) : max(0, b.bottom + 1 - y0), max(0, b.left - x0) : max(0, b.right + 1 - x0)] = 114
    size = (max(1, round(win_w * scale)), max(1, round(win_h * scale)))
    picture = cv2.resize(picture, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    ph, pw = picture.shape[:2]
    side = min(int(rng.uniform(0.15, 0.85) * ph), pw - 2, ph - 2)
    sign = _warp(render("speed", rng, Path("."), number, duplex_glyphs), side, rng)
    sh, sw = sign.shape[:2]
    box = paste(picture, sign, int(rng.integers(0, pw - sw + 1)), int(rng.integers(0, ph - sh + 1)), rng)
    cls = openset.numbered_classes().get(number, -1)
    return Scene(_camera(picture, rng), [box], [cls], {0: number} if cls < 0 else {})


def ood_sets(images_dir: Path, gt: dict[str, list[Box]], names: list[str], out_root: Path, seed: int) -> dict:
    """Out-of-domain evaluation sets from held-out photos, each a folder with images/ and gt.txt:

    - `zoomed`: one view per held-out sign, the sign filling 5-60 % of the height (close-ups);
    - `downscaled`: every held-out photo at half size (a lower-resolution camera: smaller signs);
    - `pasted`: held-out photos with speed limits and STOP signs of the 43 classes drawn in a face
      no model is trained on, at 12 px to 90 % of the height;
    - `large`: four held-out photos at a time side by side, 2x2 (2720x1600 from GTSDB's frames): a
      high-resolution camera whose signs are as few pixels high as GTSDB's, which a detector that
      shrinks large photos to a dashcam frame's size halves;
    - `yellow`: every held-out photo with the white face of each sign of a class that other
      countries paint yellow-faced (`classifier.YELLOW_FACED`) painted yellow, in place;
    - `closeup`: two phone close-ups per held-out photo (`closeup_scene`), each one speed limit of
      any plausible number, most of them numbers no class carries (the gt names those by text).
    """
    from roadsigns.shared import classes

    rng = np.random.default_rng(seed)
    font_dir = Path(".")  # duplex_glyphs needs no font files
    known = [(c, sc.text) for c in range(43) if (sc := classes.get(c)).text]

    def draw(rng: np.random.Generator, side: int) -> tuple[np.ndarray, int]:
        cls, text = known[int(rng.integers(0, len(known)))]
        return render("stop" if text == "STOP" else "speed", rng, font_dir, text, duplex_glyphs), cls

    zoomed, downscaled, pasted, large, yellow, closeup = [], [], [], [], [], []
    for k in range(0, len(names) - 3, 4):
        large.append((f"large_{k // 4:03d}.jpg", _mosaic(images_dir, names[k : k + 4], gt)))
    for name in names:
        image = cv2.imread(str(images_dir / name))
        if image is None:
            raise ValueError(f"cannot read image {images_dir / name}")
        boxes = gt.get(name, [])
        stem = Path(name).stem
        for k, b in enumerate(boxes):
            view = zoomed_view(image, [b, *[o for o in boxes if o is not b]], rng, pick_first=True)
            if view is not None:
                zoomed.append((f"{stem}_{k}.jpg", view))
        h, w = image.shape[:2]
        small = cv2.resize(image, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        downscaled.append((f"{stem}.jpg", _view(small, [_halve(b) for b in boxes], 0, 0, w // 2, h // 2, 1.0)))
        pasted.append((f"{stem}.jpg", pasted_scene(image, boxes, rng, draw, most=2)))
        yellow.append((f"{stem}.jpg", _yellow_signs(image, boxes)))
    # Drawn after the other sets, from its own generator, so that adding it left their pictures as they were.
    near = np.random.default_rng([seed, 1])
    for i, name in enumerate(names * 2):
        number = CLOSEUP_NUMBERS[int(near.integers(0, len(CLOSEUP_NUMBERS)))]
        scene = closeup_scene(cv2.imread(str(images_dir / name)), gt.get(name, []), near, number)
        closeup.append((f"{Path(name).stem}_{i // len(names)}.jpg", scene))
    return {
        label: _write_gtsdb(items, out_root / label)
        for label, items in (
            ("zoomed", zoomed),
            ("downscaled", downscaled),
            ("pasted", pasted),
            ("large", large),
            ("yellow", yellow),
            ("closeup", closeup),
        )
    }


def other_signs_gt(names: list[str], others: dict[str, list[Box]], out_root: Path) -> dict[str, int]:
    """`gt-all.txt` beside the `downscaled` and `large` sets' `gt.txt`: their GTSDB signs and the
    listed other signs of the same photos (class -1, `data.other_signs`), moved as those sets move
    a photo (halved; placed in its quarter of the 2x2 grid). Both sets only transform whole photos,
    so every other sign is in the picture; the sets drawn at random (zoomed, pasted, close-ups)
    have none. Returns the other signs added to each set."""
    added = {}
    for label in ("downscaled", "large"):
        lines = (out_root / label / "gt.txt").read_text().splitlines()
        extra = []
        for i, name in enumerate(names):
            for b in others.get(name, []):
                if label == "downscaled":
                    moved, picture = _halve(b), name
                elif i < len(names) - len(names) % 4:  # _mosaic leaves out the last photos that fill no grid
                    picture = f"large_{i // 4:03d}.jpg"
                    with Image.open(out_root / label / "images" / picture) as grid:  # the header only
                        x0, y0 = (i % 2) * (grid.width // 2), (i % 4 // 2) * (grid.height // 2)
                    moved = Box(b.left + x0, b.top + y0, b.right + x0, b.bottom + y0, b.class_id)
                else:
                    continue
                extra.append(f"{picture};{moved.left};{moved.top};{moved.right};{moved.bottom};-1")
        (out_root / label / "gt-all.txt").write_text("\n".join(lines + extra) + "\n")
        added[label] = len(extra)
    return added


def _yellow_signs(image: np.ndarray, boxes: list[Box]) -> Scene:
    """The photo with each yellow-faceable sign's face painted yellow (`classifier.yellow_face` on
    the box with a GTSRB crop's margin round it, so the face lies where it looks for it)."""
    from roadsigns.training.classifier import YELLOW_FACED, yellow_face

    out = image.copy()
    h, w = image.shape[:2]
    for b in boxes:
        if b.class_id not in YELLOW_FACED:
            continue
        pad_x, pad_y = (b.right - b.left + 1) // 8, (b.bottom - b.top + 1) // 8
        x1, y1 = max(0, b.left - pad_x), max(0, b.top - pad_y)
        x2, y2 = min(w, b.right + 1 + pad_x), min(h, b.bottom + 1 + pad_y)
        rgb = cv2.cvtColor(out[y1:y2, x1:x2], cv2.COLOR_BGR2RGB)
        out[y1:y2, x1:x2] = cv2.cvtColor(yellow_face(rgb), cv2.COLOR_RGB2BGR)
    return _view(out, boxes, 0, 0, w, h, 1.0)


def _mosaic(images_dir: Path, names: list[str], gt: dict[str, list[Box]]) -> Scene:
    """Four photos of one size in a 2x2 grid, at their own resolution, with their signs' boxes."""
    tiles = [cv2.imread(str(images_dir / name)) for name in names]
    if any(t is None or t.shape != tiles[0].shape for t in tiles):
        raise ValueError(f"cannot read {names} in {images_dir} as four photos of one size")
    h, w = tiles[0].shape[:2]
    canvas = np.zeros((2 * h, 2 * w, 3), np.uint8)
    boxes, classes = [], []
    for i, (name, tile) in enumerate(zip(names, tiles, strict=True)):
        y0, x0 = (i // 2) * h, (i % 2) * w
        canvas[y0 : y0 + h, x0 : x0 + w] = tile
        for b in gt.get(name, []):
            boxes.append((float(b.left + x0), float(b.top + y0), float(b.right + 1 + x0), float(b.bottom + 1 + y0)))
            classes.append(b.class_id)
    return Scene(canvas, boxes, classes)


def _halve(b: Box) -> Box:
    return Box(b.left // 2, b.top // 2, b.right // 2, b.bottom // 2, b.class_id)
