"""Learned readers for the text on a sign: a speed limit's number, a STOP sign's word.

Tesseract misses most sign text below about 30 px, and GTSDB signs are that small. Each
reader is a small CNN that reads a fixed number of character places (a place may be
empty) from the same 32x32 crop the classifier sees:

- `NUMBERS`: three digit places (hundreds, tens, units), right-aligned.
- `WORDS`: five capital-letter places, left-aligned, for white letters on a red octagon.

They must read text no GTSRB class has ("90", "40", "HALT"), so the class never enters
them, and their training data teaches every character in every place: real GTSRB crops
give what the data set has (the eight speed limits, STOP), and signs rendered here give
the rest, then blurred, shrunk, lit and tilted as a camera would.
"""

from __future__ import annotations

import functools
import math
import string
import time
from collections.abc import Callable
from dataclasses import dataclass
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
from roadsigns.training import faces as faces_mod
from roadsigns.training.classifier import _augment
from roadsigns.training.faces import Faces

SIZE = 32


@dataclass(frozen=True)
class Script:
    """What one reader reads: its characters, how many places, and how text sits in them."""

    name: str
    alphabet: str
    places: int
    align: str  # "right": the last character in the last place (units); "left": the first in the first

    @property
    def blank(self) -> int:
        """The symbol for an empty place, after the alphabet's own."""
        return len(self.alphabet)

    def encode(self, text: str) -> list[int]:
        """NUMBERS: "50" -> [blank, 5, 0]. WORDS: "STOP" -> [S, T, O, P, blank]."""
        symbols = [self.alphabet.index(c) for c in text]
        pad = [self.blank] * (self.places - len(symbols))
        return pad + symbols if self.align == "right" else symbols + pad

    def decode(self, places: list[int]) -> str:
        return "".join(self.alphabet[s] for s in places if s != self.blank)

    def accepts(self, text: str) -> bool:
        return 0 < len(text) <= self.places and all(c in self.alphabet for c in text)


NUMBERS = Script("digits", string.digits, 3, "right")
WORDS = Script("words", string.ascii_uppercase, 5, "left")


class ReaderNet(nn.Module):
    """Three conv blocks, then one head per character place (the alphabet plus blank).

    Standardises each image itself (zero mean, unit deviation), so the exported graph
    takes plain 0-255 RGB and the OCR service needs no preprocessing code of its own.
    """

    def __init__(self, script: Script) -> None:
        super().__init__()
        self.script = script
        # Spatial layout matters (which character is where), so the trunk keeps a 4x4 map.
        self.features = nn.Sequential(conv_block(3, 32), conv_block(32, 64), conv_block(64, 128))
        self.head = nn.Sequential(
            nn.Flatten(), nn.Dropout(0.3), nn.Linear(128 * 4 * 4, 256), nn.ReLU(inplace=True), nn.Dropout(0.3)
        )
        self.places = nn.Linear(256, script.places * (script.blank + 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """N x 3 x 32 x 32 RGB in 0-255 -> N x places x (alphabet + blank) logits."""
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        std = x.std(dim=(1, 2, 3), keepdim=True).clamp(min=1.0)
        x = (x - mean) / std
        return self.places(self.head(self.features(x))).view(-1, self.script.places, self.script.blank + 1)


# Faces for the rendered text (training/faces.py): the `base` set unless a caller passes
# others. The detector's scene renderer and the classifier's rendered speed limits use the
# base set; the readers' stages choose theirs in the config. HERSHEY_DUPLEX is in no set:
# tests/test_ocr.py renders its "90"/"40"/"HALT" signs with it, so it stays a face never trained on.
_TTF = faces_mod.MATPLOTLIB
_HERSHEY = tuple(faces_mod.HERSHEY.values())


def _font_dir() -> Path:
    return faces_mod.matplotlib_dir()


@functools.lru_cache(maxsize=64)
def _truetype(path: Path) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(path), 96)


def _glyph_mask(text: str, rng: np.random.Generator, font_dir: Path, faces: Faces | None = None) -> Image.Image:
    """White characters on black, tightly cropped, in a random face of `faces` (default: the base set)."""
    faces = faces or faces_mod.base(font_dir)
    pick = int(rng.integers(0, len(faces)))
    if pick < len(faces.truetype):
        font = _truetype(faces.truetype[pick])
        left, top, right, bottom = font.getbbox(text)
        mask = Image.new("L", (right - left + 8, bottom - top + 8), 0)
        ImageDraw.Draw(mask).text((4 - left, 4 - top), text, fill=255, font=font)
        return mask
    face, thickness = faces.hershey[pick - len(faces.truetype)], int(rng.integers(4, 11))
    (w, h), base = cv2.getTextSize(text, face, 3.0, thickness)
    canvas = np.zeros((h + base + 2 * thickness, w + 2 * thickness), np.uint8)
    cv2.putText(canvas, text, (thickness, h + thickness), face, 3.0, 255, thickness, cv2.LINE_AA)
    ys, xs = np.nonzero(canvas)
    return Image.fromarray(canvas[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1])


def random_number(rng: np.random.Generator) -> str:
    """Half speed-limit-like (5 to 130 by fives), half any two or three digits."""
    if rng.random() < 0.5:
        return str(int(rng.integers(1, 27)) * 5)
    if rng.random() < 0.6:
        return str(int(rng.integers(10, 100)))
    return str(int(rng.integers(100, 200 if rng.random() < 0.8 else 1000)))


def random_word(rng: np.random.Generator) -> str:
    """A third "STOP" (what most such signs say), the rest any two to five capitals.

    Random letters, not a word list, so that the reader learns letters rather than a
    vocabulary: a "HALT" or "ALTO" sign must read as what it says.
    """
    if rng.random() < 1 / 3:
        return "STOP"
    return "".join(rng.choice(list(WORDS.alphabet), int(rng.integers(2, 6))))


_BIG = 128  # the canvas a sign is drawn on before the camera shrinks it


def _background(rng: np.random.Generator) -> Image.Image:
    img = np.empty((_BIG, _BIG, 3), np.float32)
    img[:] = rng.integers(30, 220, 3)
    img += rng.normal(0, rng.uniform(2, 18), (_BIG, _BIG, 1))  # texture
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def _red(rng: np.random.Generator) -> tuple[int, int, int]:
    return (int(rng.uniform(150, 240)), int(rng.uniform(0, 60)), int(rng.uniform(0, 70)))


def _paste_text(
    canvas: Image.Image,
    mask: Image.Image,
    centre: np.ndarray,
    height: float,
    squeeze: float,
    max_width: float,
    ink: tuple[int, int, int],
) -> None:
    """Text drawn large (`mask`, from `_glyph_mask`), squeezed or widened, pasted centred in `ink`."""
    width = min(max_width, mask.width * height / mask.height * squeeze)
    mask = mask.resize((max(1, int(width)), max(1, int(height))), Image.Resampling.LANCZOS)
    canvas.paste(ink, (int(centre[0] - width / 2), int(centre[1] - height / 2)), mask)


def _camera(out: np.ndarray, rng: np.random.Generator, smallest: int = 12) -> np.ndarray:
    """Tilt, perspective, light, blur, the sign's real size (`smallest` to 32 px across) and noise."""
    angle = rng.uniform(-8, 8)
    src = np.float32([[0, 0], [_BIG, 0], [_BIG, _BIG], [0, _BIG]])
    dst = src + rng.uniform(-6, 6, (4, 2)).astype(np.float32)
    warp = cv2.getPerspectiveTransform(src, dst)
    rot = np.vstack([cv2.getRotationMatrix2D((_BIG / 2, _BIG / 2), angle, rng.uniform(0.92, 1.08)), [0, 0, 1]])
    out = cv2.warpPerspective(out, rot @ warp, (_BIG, _BIG), borderMode=cv2.BORDER_REFLECT)
    out = out * rng.uniform(0.35, 1.25) + rng.uniform(-30, 30)
    out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.3, 2.5))
    seen = int(rng.integers(smallest, 33))  # pixels across in the photo
    out = cv2.resize(out, (seen, seen), interpolation=cv2.INTER_AREA)
    out = cv2.resize(out, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
    out += rng.normal(0, rng.uniform(0, 8), out.shape)
    return np.clip(out, 0, 255).astype(np.uint8)


def render_sign(
    number: str, rng: np.random.Generator, font_dir: Path, faces: Faces | None = None, yellow: float = 0.0
) -> np.ndarray:
    """A speed-limit sign showing `number` as a camera might see it: 32x32 RGB uint8.

    A red ring, a white face (with probability `yellow` a yellow one, as Sweden and Finland paint
    theirs), dark digits.
    """
    canvas = _background(rng)
    draw = ImageDraw.Draw(canvas)
    c = _BIG / 2 + rng.uniform(-4, 4, 2)
    radius = _BIG * rng.uniform(0.38, 0.5)  # GTSRB crops keep a margin round the sign
    ring = radius * rng.uniform(0.14, 0.2)
    red = _red(rng)
    face = int(rng.uniform(170, 255))
    face_rgb = (face, face, face - 5)
    if yellow and rng.random() < yellow:  # no draw without it: the classifier's signs stay as they were
        face_rgb = (face, int(face * rng.uniform(0.72, 0.9)), int(face * rng.uniform(0.05, 0.35)))
    draw.ellipse([c[0] - radius, c[1] - radius, c[0] + radius, c[1] + radius], fill=red)
    inner = radius - ring
    draw.ellipse([c[0] - inner, c[1] - inner, c[0] + inner, c[1] + inner], fill=face_rgb)
    mask = _glyph_mask(number, rng, font_dir, faces)
    height = inner * rng.uniform(0.7, 1.2)
    squeeze = rng.uniform(0.55, 1.05) if len(number) <= 2 else rng.uniform(0.45, 0.9)
    ink = int(rng.uniform(0, 60))
    _paste_text(canvas, mask, c, height, squeeze, 1.7 * inner, (ink, ink, ink))
    return _camera(np.asarray(canvas).astype(np.float32), rng)


def render_stop(word: str, rng: np.random.Generator, font_dir: Path, faces: Faces | None = None) -> np.ndarray:
    """A STOP-type sign showing `word`: a red octagon in a thin white rim, white capitals."""
    canvas = _background(rng)
    draw = ImageDraw.Draw(canvas)
    c = _BIG / 2 + rng.uniform(-4, 4, 2)
    radius = _BIG * rng.uniform(0.38, 0.5)
    turn = rng.uniform(-0.1, 0.1) + math.pi / 8  # flat top and bottom, as the sign stands
    white = int(rng.uniform(170, 255))
    rim = radius * rng.uniform(0.04, 0.09)

    def octagon(r: float) -> list[tuple[float, float]]:
        angles = [turn + k * math.pi / 4 for k in range(8)]
        return [(c[0] + r * math.cos(a), c[1] + r * math.sin(a)) for a in angles]

    draw.polygon(octagon(radius), fill=(white, white, white - 5))
    draw.polygon(octagon(radius - rim), fill=_red(rng))
    inner = (radius - rim) * math.cos(math.pi / 8)  # centre to the middle of a side
    mask = _glyph_mask(word, rng, font_dir, faces)
    height = inner * rng.uniform(0.5, 0.8)
    squeeze = rng.uniform(0.6, 1.1)
    _paste_text(canvas, mask, c, height, squeeze, 1.8 * inner, (white, white, white))
    # Below about 16 px across, five letters are a smudge: no label could be right.
    return _camera(np.asarray(canvas).astype(np.float32), rng, smallest=16)


_RENDER = {NUMBERS.name: (random_number, render_sign), WORDS.name: (random_word, render_stop)}


def synthetic(
    script: Script, n: int, seed: int, faces: Faces | None = None, yellow: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """`n` rendered signs for `script` and their encoded texts, in `faces` (default: the base set);
    speed limits yellow-faced with probability `yellow`."""
    rng = np.random.default_rng(seed)
    font_dir = _font_dir()
    pick_text, render = _RENDER[script.name]
    texts = [pick_text(rng) for _ in range(n)]
    if script.name == NUMBERS.name:
        images = np.stack([render_sign(text, rng, font_dir, faces, yellow) for text in texts])
    else:
        images = np.stack([render(text, rng, font_dir, faces) for text in texts])
    return images, np.array([script.encode(text) for text in texts], np.int64)


def speed_limit_signs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` rendered signs of the speed-limit classes, spread evenly, and their class ids (for the classifier).

    GTSRB's speed-limit classes differ only in their digits, while each physical sign
    brings its own light and background: rendered ones, with random backgrounds, faces and
    light, make the digits the only thing that tells these classes apart.
    """
    rng = np.random.default_rng(seed)
    font_dir = _font_dir()
    numbered = [(c, classes.get(c).text or "") for c in range(43)]
    numbered = [(c, text) for c, text in numbered if text.isdigit()]
    ids = np.array([numbered[i % len(numbered)][0] for i in range(n)], np.int64)
    texts = {c: text for c, text in numbered}
    images = (
        np.stack([render_sign(texts[int(c)], rng, font_dir) for c in ids])
        if n
        else np.zeros((0, SIZE, SIZE, 3), np.uint8)
    )
    return images, ids


def real(script: Script, images: np.ndarray, labels: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The GTSRB crops among `idx` whose class carries text in `script`, labelled with that text."""
    texts = {c: classes.get(c).text or "" for c in range(43)}
    keep = np.array([i for i in idx if script.accepts(texts[int(labels[i])])], np.int64)
    targets = np.array([script.encode(texts[int(labels[i])]) for i in keep], np.int64).reshape(-1, script.places)
    return images[keep], targets


def read(model: ReaderNet, images: np.ndarray, batch: int = 512) -> list[str]:
    """The text the model reads on each image."""
    model.eval()
    texts: list[str] = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = torch.from_numpy(np.ascontiguousarray(images[i : i + batch].transpose(0, 3, 1, 2))).float()
            texts += [model.script.decode(row) for row in model(x).argmax(dim=2).tolist()]
    return texts


def exact_rate(model: ReaderNet, images: np.ndarray, targets: np.ndarray) -> float:
    """Share of images whose whole text is read exactly."""
    if not len(images):
        return 0.0
    truth = [model.script.decode(list(t)) for t in targets]
    return float(np.mean([a == b for a, b in zip(read(model, images), truth, strict=True)]))


def _low_light(x: torch.Tensor, gen: torch.Generator, share: float) -> torch.Tensor:
    """Dusk, shade and a cheap sensor on `share` of a batch of 0-255 images: the light crushed by a
    gamma of 1.3-2.8 and a gain of 0.25-0.9, then sensor noise, then 8-bit steps again.

    The network standardises each image, so a plain darker picture changes nothing it sees. What
    low light really costs is contrast between dark digits and a grey face, and the few grey levels
    left between them: the digits' strokes blur into noise and a "5" is read as the "0" that
    GTSRB's speed limits always end in.
    """
    n = x.shape[0]
    dark = (torch.rand(n, generator=gen) < share).float()[:, None, None, None]
    gamma = 1.3 + torch.rand(n, 1, 1, 1, generator=gen) * 1.5
    gain = 0.25 + torch.rand(n, 1, 1, 1, generator=gen) * 0.65
    dim = 255 * (x.clamp(0, 255) / 255) ** gamma * gain
    dim = (dim + torch.randn(x.shape, generator=gen) * torch.rand(n, 1, 1, 1, generator=gen) * 4).round().clamp(0, 255)
    return dark * dim + (1 - dark) * x


def train(
    script: Script,
    x: np.ndarray,
    y: np.ndarray,
    val: tuple[np.ndarray, np.ndarray],
    cfg: dict[str, Any],
    seed: int,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> tuple[ReaderNet, float]:
    """AdamW, one-cycle schedule; returns the model with the best exact-read rate on `val`."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = ReaderNet(script).to(memory_format=torch.channels_last)
    x_train = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).float()
    y_train = torch.from_numpy(y)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    steps = cfg["epochs"] * math.ceil(len(x_train) / cfg["batch"])
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg["lr"], total_steps=steps, pct_start=0.15)
    val_x, val_y = val
    low_light = float(cfg.get("low_light", 0.0))
    best_exact, best_state = -1.0, None
    for epoch in range(cfg["epochs"]):
        model.train()
        t0 = time.perf_counter()
        order = torch.randperm(len(x_train), generator=gen)
        total = 0.0
        for i in range(0, len(order), cfg["batch"]):
            idx = order[i : i + cfg["batch"]]
            batch = _augment(x_train[idx], gen)
            if low_light:
                batch = _low_light(batch, gen, low_light)
            logits = model(batch.contiguous(memory_format=torch.channels_last))
            loss = F.cross_entropy(logits.reshape(-1, script.blank + 1), y_train[idx].reshape(-1), label_smoothing=0.05)
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


def export(model: ReaderNet, out: Path) -> Path:
    """ONNX with a dynamic batch axis: `images` N x 3 x 32 x 32 float (0-255 RGB) -> `places`.

    The graph carries its script (alphabet, places) as metadata, so the OCR service
    decodes it without knowing which reader it loaded.
    """
    import onnx

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
    graph = onnx.load(str(out))
    describe(graph, model.script)
    onnx.save(graph, str(out))
    return out


def describe(graph: Any, script: Script) -> None:
    """Write `script` into an ONNX model's metadata (what the OCR service's reader reads back)."""
    meta = {"alphabet": script.alphabet, "places": str(script.places), "script": script.name}
    kept = [p for p in graph.metadata_props if p.key not in meta]
    del graph.metadata_props[:]
    graph.metadata_props.extend(kept)
    for key, value in meta.items():
        graph.metadata_props.add(key=key, value=value)
