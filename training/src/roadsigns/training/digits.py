"""A learned reader for the number on a speed-limit sign: up to three digits, read from pixels.

Tesseract misses most speed limits below about 30 px, and GTSDB signs are that small.
This CNN reads each of three digit places (hundreds, tens, units; a place may be empty)
from the same 32x32 crop the classifier sees.

It must read numbers no GTSRB class has ("90", "40"), so the class never enters it, and
its training data teaches every digit in every place: real GTSRB crops give the eight
numbers the data set has (20, 30, 50, 60, 70, 80, 100, 120), and signs rendered here
(a red ring, a white face, black digits in a condensed bold face, then blurred, shrunk,
lit and tilted as a camera would) give the rest, 0 to 9 in each place.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from torch import nn

from roadsigns.detector.classifier_net import conv_block
from roadsigns.shared import classes
from roadsigns.training.classifier import _augment

PLACES = 3  # hundreds, tens, units
BLANK = 10  # the symbol for an empty place
SIZE = 32


def encode(number: str) -> list[int]:
    """ "50" -> [BLANK, 5, 0]: right-aligned digits, empty places blank."""
    digits = [int(c) for c in number]
    return [BLANK] * (PLACES - len(digits)) + digits


def decode(places: list[int]) -> str:
    return "".join(str(d) for d in places if d != BLANK)


class DigitNet(nn.Module):
    """Three conv blocks, then one 11-way head per digit place.

    Standardises each image itself (zero mean, unit deviation), so the exported graph
    takes plain 0-255 RGB and the OCR service needs no preprocessing code of its own.
    """

    def __init__(self) -> None:
        super().__init__()

        # Spatial layout matters (which digit is where), so the trunk keeps a 4x4 map.
        self.features = nn.Sequential(conv_block(3, 32), conv_block(32, 64), conv_block(64, 128))
        self.head = nn.Sequential(
            nn.Flatten(), nn.Dropout(0.3), nn.Linear(128 * 4 * 4, 256), nn.ReLU(inplace=True), nn.Dropout(0.3)
        )
        self.places = nn.Linear(256, PLACES * (BLANK + 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """N x 3 x 32 x 32 RGB in 0-255 -> N x 3 x 11 logits."""
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        std = x.std(dim=(1, 2, 3), keepdim=True).clamp(min=1.0)
        x = (x - mean) / std
        return self.places(self.head(self.features(x))).view(-1, PLACES, BLANK + 1)


# Faces for the rendered digits: no sign font ships with anything installable here, so
# variety stands in for it. TrueType faces that matplotlib (an ultralytics dependency)
# ships, and OpenCV's Hershey stroke faces. HERSHEY_DUPLEX is left out on purpose:
# tests/test_ocr.py renders its "90"/"40" signs with it, so it stays a face never trained on.
_TTF = ("DejaVuSans-Bold.ttf", "DejaVuSans.ttf", "DejaVuSansMono-Bold.ttf", "DejaVuSerif-Bold.ttf", "cmss10.ttf")
_HERSHEY = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_COMPLEX, cv2.FONT_HERSHEY_TRIPLEX)


def _font_dir() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def _glyph_mask(number: str, rng: np.random.Generator, font_dir: Path) -> Image.Image:
    """White digits on black, tightly cropped, in a random face and stroke weight."""
    pick = int(rng.integers(0, len(_TTF) + len(_HERSHEY)))
    if pick < len(_TTF):
        font = ImageFont.truetype(str(font_dir / _TTF[pick]), 96)
        left, top, right, bottom = font.getbbox(number)
        mask = Image.new("L", (right - left + 8, bottom - top + 8), 0)
        ImageDraw.Draw(mask).text((4 - left, 4 - top), number, fill=255, font=font)
        return mask
    face, thickness = _HERSHEY[pick - len(_TTF)], int(rng.integers(4, 11))
    (w, h), base = cv2.getTextSize(number, face, 3.0, thickness)
    canvas = np.zeros((h + base + 2 * thickness, w + 2 * thickness), np.uint8)
    cv2.putText(canvas, number, (thickness, h + thickness), face, 3.0, 255, thickness, cv2.LINE_AA)
    ys, xs = np.nonzero(canvas)
    return Image.fromarray(canvas[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1])


def random_number(rng: np.random.Generator) -> str:
    """Half speed-limit-like (5 to 130 by fives), half any two or three digits."""
    if rng.random() < 0.5:
        return str(int(rng.integers(1, 27)) * 5)
    if rng.random() < 0.6:
        return str(int(rng.integers(10, 100)))
    return str(int(rng.integers(100, 200 if rng.random() < 0.8 else 1000)))


def render_sign(number: str, rng: np.random.Generator, font_dir: Path) -> np.ndarray:
    """A speed-limit sign showing `number` as a camera might see it: 32x32 RGB uint8."""
    big = 128
    background = rng.integers(30, 220, 3)
    img = np.empty((big, big, 3), np.float32)
    img[:] = background
    img += rng.normal(0, rng.uniform(2, 18), (big, big, 1))  # texture
    canvas = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    c = big / 2 + rng.uniform(-4, 4, 2)
    radius = big * rng.uniform(0.38, 0.5)  # GTSRB crops keep a margin round the sign
    ring = radius * rng.uniform(0.14, 0.2)
    red = tuple(int(v) for v in (rng.uniform(150, 240), rng.uniform(0, 60), rng.uniform(0, 70)))
    face = int(rng.uniform(170, 255))
    draw.ellipse([c[0] - radius, c[1] - radius, c[0] + radius, c[1] + radius], fill=red)
    inner = radius - ring
    draw.ellipse([c[0] - inner, c[1] - inner, c[0] + inner, c[1] + inner], fill=(face, face, face - 5))
    # The digits: drawn large, squeezed or widened, pasted centred.
    text = _glyph_mask(number, rng, font_dir)
    height = inner * rng.uniform(0.7, 1.2)
    squeeze = rng.uniform(0.55, 1.05) if len(number) <= 2 else rng.uniform(0.45, 0.9)
    width = min(1.7 * inner, text.width * height / text.height * squeeze)
    text = text.resize((max(1, int(width)), max(1, int(height))), Image.Resampling.LANCZOS)
    ink = int(rng.uniform(0, 60))
    canvas.paste((ink, ink, ink), (int(c[0] - width / 2), int(c[1] - height / 2)), text)
    out = np.asarray(canvas).astype(np.float32)
    # Camera: tilt, perspective, light, blur, the sign's real size, noise.
    angle = rng.uniform(-8, 8)
    src = np.float32([[0, 0], [big, 0], [big, big], [0, big]])
    dst = src + rng.uniform(-6, 6, (4, 2)).astype(np.float32)
    warp = cv2.getPerspectiveTransform(src, dst)
    rot = np.vstack([cv2.getRotationMatrix2D((big / 2, big / 2), angle, rng.uniform(0.92, 1.08)), [0, 0, 1]])
    out = cv2.warpPerspective(out, rot @ warp, (big, big), borderMode=cv2.BORDER_REFLECT)
    out = out * rng.uniform(0.35, 1.25) + rng.uniform(-30, 30)
    out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.3, 2.5))
    seen = int(rng.integers(12, 33))  # pixels across in the photo
    out = cv2.resize(out, (seen, seen), interpolation=cv2.INTER_AREA)
    out = cv2.resize(out, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
    out += rng.normal(0, rng.uniform(0, 8), out.shape)
    return np.clip(out, 0, 255).astype(np.uint8)


def synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    font_dir = _font_dir()
    numbers = [random_number(rng) for _ in range(n)]
    images = np.stack([render_sign(num, rng, font_dir) for num in numbers])
    return images, np.array([encode(num) for num in numbers], np.int64)


def real(images: np.ndarray, labels: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The GTSRB crops among `idx` whose class shows a number, labelled with that number."""
    texts = {c: classes.get(c).text for c in range(43)}
    keep = np.array([i for i in idx if (texts[int(labels[i])] or "").isdigit()], np.int64)
    targets = np.array([encode(texts[int(labels[i])]) for i in keep], np.int64)
    return images[keep], targets


def read(model: DigitNet, images: np.ndarray, batch: int = 512) -> list[str]:
    """The number the model reads on each image."""
    model.eval()
    texts: list[str] = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = torch.from_numpy(np.ascontiguousarray(images[i : i + batch].transpose(0, 3, 1, 2))).float()
            texts += [decode(row) for row in model(x).argmax(dim=2).tolist()]
    return texts


def exact_rate(model: DigitNet, images: np.ndarray, targets: np.ndarray) -> float:
    """Share of images whose whole number is read exactly."""
    if not len(images):
        return 0.0
    return float(np.mean([t == decode(list(e)) for t, e in zip(read(model, images), targets, strict=True)]))


def train(
    x: np.ndarray,
    y: np.ndarray,
    val: tuple[np.ndarray, np.ndarray],
    cfg: dict[str, Any],
    seed: int,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> tuple[DigitNet, float]:
    """AdamW, one-cycle schedule; returns the model with the best exact-read rate on `val`."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = DigitNet()
    x_train = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).float()
    y_train = torch.from_numpy(y)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    steps = cfg["epochs"] * math.ceil(len(x_train) / cfg["batch"])
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg["lr"], total_steps=steps, pct_start=0.15)
    val_x, val_y = val
    best_exact, best_state = -1.0, None
    for epoch in range(cfg["epochs"]):
        model.train()
        t0 = time.perf_counter()
        order = torch.randperm(len(x_train), generator=gen)
        total = 0.0
        for i in range(0, len(order), cfg["batch"]):
            idx = order[i : i + cfg["batch"]]
            logits = model(_augment(x_train[idx], gen))
            loss = F.cross_entropy(logits.reshape(-1, BLANK + 1), y_train[idx].reshape(-1), label_smoothing=0.05)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        exact = exact_rate(model, val_x, val_y)
        if exact >= best_exact:
            best_exact = exact
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if on_epoch is not None:
            on_epoch(
                epoch, {"train_loss": total / len(order), "val_exact": exact, "epoch_seconds": time.perf_counter() - t0}
            )
    assert best_state is not None
    model.load_state_dict(best_state)
    model.eval()
    return model, best_exact


def export(model: DigitNet, out: Path) -> Path:
    """ONNX with a dynamic batch axis: `images` N x 3 x 32 x 32 float (0-255 RGB) -> `places` N x 3 x 11."""
    model.eval()
    torch.onnx.export(
        model,
        torch.zeros(1, 3, SIZE, SIZE),
        str(out),
        input_names=["images"],
        output_names=["places"],
        dynamic_axes={"images": {0: "batch"}, "places": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    return out
