"""Read the text on a sign crop: learned readers for speed limits and STOP words, Tesseract for the rest.

The class may choose *how* to read (digits on a speed-limit sign, a known word on a
STOP sign, free text on anything else) but never supplies the text: a "90" sign,
which no GTSRB class has, must read "90".
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytesseract

from roadsigns.ocr.learned import LearnedReader, weights_dir
from roadsigns.ocr.shape import UNKNOWN, ShapeCue, shape_cue
from roadsigns.shared import classes
from roadsigns.shared.settings import get_settings

# Classes whose face is a number (inside a red ring, or struck through for class 6).
SPEED_CLASSES = {0, 1, 2, 3, 4, 5, 6, 7, 8}
STOP_CLASS = 14
# Pictogram-only signs: nothing to read, unless the classifier was unsure of the class.
# (disc diameter as a fraction of the crop, threshold shift, opening kernel), most often right first.
_NUMBER_VARIANTS = [(0.66, 0.0, 0), (0.66, -0.2, 3), (0.74, -0.2, 3), (0.6, -0.35, 3), (0.74, 0.0, 0), (0.66, -0.35, 0)]
LEARNED_SURE = 0.5  # a learned reader's probability for its whole reading
TESSERACT_SURE = 60.0  # Tesseract's mean confidence over the agreeing readings
# A reading sure enough to name a sign's class (Reading.sure): the learned reader at this
# probability or more, or the learned reader and Tesseract agreeing. The digit reader's
# probability is a product over three places and rarely passes 0.95 even when right
# (median 0.90 on real crops), so 0.9 would refuse half the right readings. Measured at 0.75
# on the 6,390 GTSRB speed-limit crops: 97.8 % pass, one wrong ("60" read "80", a number a
# class has, so no invented class); 53 of the 55 held-out speed limits in tests/data/crops
# pass, none wrong; rendered foreign limits ("40", "90") read at 0.78-0.83. Only red-ring
# pictograms fool it ("no overtaking (trucks)" reads "80"): shape_cue's speed face keeps
# those off the digit path.
READ_SURE = 0.75
_PLAUSIBLE_SPEED = re.compile(r"^([1-9]0|1[0-3]0)$")  # 10, 20, ... 130 km/h
_PLAUSIBLE_WORD = re.compile(r"^[A-Z]{2,}$")


@dataclass(frozen=True)
class Reading:
    text: str
    confidence: float  # 0..100: a learned reader's probability x 100, or Tesseract's word confidence
    mode: str  # which reading strategy produced it
    sure: bool = False  # sure enough to name the sign's class (see READ_SURE)


def _upscale(gray: np.ndarray, target_h: int) -> np.ndarray:
    scale = max(1.0, target_h / max(1, gray.shape[0]))
    return cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)


def _pad(bw: np.ndarray, border: int = 16) -> np.ndarray:
    return cv2.copyMakeBorder(bw, border, border, border, border, cv2.BORDER_CONSTANT, value=255)


def _binarise(gray: np.ndarray, dark_text: bool = True) -> np.ndarray:
    """Otsu threshold to black text on white, plus a white margin Tesseract likes."""
    blur = cv2.GaussianBlur(gray, (3, 3), 0)
    _, bw = cv2.threshold(blur, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return _pad(bw if dark_text else 255 - bw)


def _glyphs(ink: np.ndarray, region: np.ndarray, min_h: float, max_h: float) -> np.ndarray | None:
    """Keep the connected components of `ink` (255 = ink) that look like characters of the sign.

    The sign's ring, its rim and the background all leave blobs after thresholding,
    which Tesseract reads as `(`, `|` or `0`. Characters are the blobs that sit inside
    `region`, do not touch its edge, and are a plausible fraction of the crop's height.
    """
    size = ink.shape[0]
    n, labels, stats, _ = cv2.connectedComponentsWithStats(ink & region, connectivity=8)
    edge = cv2.morphologyEx(region, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
    keep = np.zeros_like(ink)
    boxes = []
    for i in range(1, n):
        x, y, w, h, area = stats[i]
        if not (min_h * size <= h <= max_h * size) or w > 0.6 * size or area < 0.15 * w * h:
            continue
        component = labels == i
        if (component & (edge > 0)).any():
            continue
        keep[component] = 255
        boxes.append((x, y, w, h))
    if not boxes:
        return None
    # Characters of one line share a band: drop blobs far off the median row.
    mid = float(np.median([y + h / 2 for x, y, w, h in boxes]))
    hmed = float(np.median([h for *_, h in boxes]))
    for x, y, w, h in boxes:
        if abs(y + h / 2 - mid) > 0.5 * hmed:
            keep[y : y + h, x : x + w] = 0
    ys, xs = np.nonzero(keep)
    if len(ys) == 0:
        return None
    glyphs = 255 - keep[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    return _pad(glyphs, max(8, int(0.3 * (ys.max() - ys.min()))))


def _without_red(bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Brightest channel, with red pixels (the ring, even a dim one) painted white, and a non-red mask.

    The face is bright in every channel, the ring bright in red or at least redder
    than it is green or blue, and the digits dark and grey. What is left dark is ink.
    """
    b, g, r = (bgr[..., i].astype(np.int16) for i in range(3))
    value = np.maximum(np.maximum(b, g), r)
    redness = r - np.maximum(g, b)
    red = redness > 25
    value[red] = 255
    return value.astype(np.uint8), np.where(red, 0, 255).astype(np.uint8)


def _disc(size: int, frac: float) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    cv2.circle(mask, (size // 2, size // 2), int(size * frac / 2), 255, -1)
    return mask


def _otsu_ink(gray: np.ndarray, region: np.ndarray, shift: float = 0.0) -> np.ndarray:
    """Dark pixels (255) by Otsu's threshold over `region`, moved by `shift` of the ink-to-face gap.

    A negative shift keeps only the darkest ink: thinner strokes, fewer bridges
    between digits or to the ring.
    """
    values = gray[region > 0]
    if values.size == 0:
        return np.zeros_like(gray)
    thr, _ = cv2.threshold(values.reshape(-1, 1), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    dark, light = values[values <= thr], values[values > thr]
    if shift and dark.size and light.size:
        thr += shift * (float(np.median(light)) - float(np.median(dark)))
    return np.where(gray <= thr, 255, 0).astype(np.uint8)


def _tesseract(img: np.ndarray, psm: int, lang: str, whitelist: str | None) -> tuple[str, float]:
    config = f"--psm {psm} --oem 1"
    if whitelist:
        config += f" -c tessedit_char_whitelist={whitelist}"
    data = pytesseract.image_to_data(img, lang=lang, config=config, output_type=pytesseract.Output.DICT)
    words, confs = [], []
    for word, conf in zip(data["text"], data["conf"], strict=False):
        conf = float(conf)
        if word.strip() and conf >= 0:
            words.append(word.strip())
            confs.append(conf)
    if not words:
        return "", 0.0
    return " ".join(words), float(min(confs))


class SignReader:
    """Chooses a reading strategy from the class; returns what the pixels say."""

    def __init__(
        self,
        languages: str = "eng",
        min_confidence: float = 40.0,
        learned_readers: bool = True,
        min_class_probability: float = 0.5,
        weights: Path | None = None,
    ) -> None:
        """`learned_readers=False` leaves speed limits and STOP words to Tesseract too (slower, less
        accurate, and never sure enough to name a class). Below `min_class_probability` the
        classifier's class does not choose how to read (ROADSIGNS_OPEN_SET_MIN_PROBABILITY).
        `weights`: the folder of the learned readers; default ROADSIGNS_OCR_WEIGHTS_DIR, else the
        shipped ones."""
        self.languages = languages
        self.min_confidence = min_confidence
        self.min_class_probability = min_class_probability
        self.digits: LearnedReader | None = None
        self.words: LearnedReader | None = None
        if learned_readers:
            folder = weights_dir(weights if weights is not None else get_settings().ocr_weights_dir)
            self.digits, self.words = LearnedReader(folder / "digits.onnx"), LearnedReader(folder / "words.onnx")
        self.version = f"tesseract {pytesseract.get_tesseract_version()} ({languages})"
        if self.digits is not None and self.words is not None:
            self.version += f"; {self.digits.version}; {self.words.version}"

    def read(
        self,
        crop_bgr: np.ndarray,
        class_id: int | None,
        class_probability: float = 1.0,
        cue: ShapeCue | None = None,
        tesseract: bool = True,
    ) -> Reading:
        """Digits for a speed-limit class at any probability, and for a speed-limit face
        (red ring, light inside: `cue`, computed when not given) whatever the class when the
        classifier is unsure: a "40", which no class has, leaves the classifier unsure but is
        a number in a red ring all the same. A word for a sure STOP class, and for a red face
        (octagon or disc) the classifier is unsure of.

        `tesseract=False` reads digits with the learned reader alone: for a crop that only a
        sure reading would report, most often not a sign at all, Tesseract's tenths of a
        second are not spent (a speed limit the learned reader is unsure of stays unread).
        """
        if crop_bgr is None or crop_bgr.size == 0:
            return Reading("", 0.0, "empty")
        sure = class_id is not None and class_probability >= self.min_class_probability
        # The shape speaks only where the classifier is unsure; computed once, when not given.
        face = UNKNOWN if sure else (cue or shape_cue(crop_bgr))
        if class_id in SPEED_CLASSES or face.speed_face:
            # Tesseract confirms an in-between learned reading only where that could change
            # the name: not where it is the number of a class the classifier is sure of.
            expected = classes.get(class_id).text if sure and class_id is not None else None
            return self._read_number(crop_bgr, tesseract, expected)
        if class_id == STOP_CLASS and sure:
            return self._read_stop(crop_bgr)
        if face.shape == "red_face":
            # A red octagon or disc the classifier is unsure of: a STOP it has not learned (another
            # type face, small, in shade) reads as one, where free text (Tesseract) read nothing.
            # Any other word is the word reader guessing (on a no-entry bar: "KRXDB" at 0.0004).
            word = self._read_stop(crop_bgr)
            return word if word.text == classes.get(STOP_CLASS).text else self._read_free(crop_bgr)
        if class_id is not None and sure and classes.get(class_id).text is None:
            return Reading("", 0.0, "pictogram")
        return self._read_free(crop_bgr)

    def _read_number(self, bgr: np.ndarray, tesseract: bool = True, expected: str | None = None) -> Reading:
        if self.digits is None:
            return self._tesseract_number(bgr) if tesseract else Reading("", 0.0, "digits/skipped")
        if not tesseract:
            text, p = self.digits.read(bgr)
            return Reading(text, 100 * p, "digits/cnn-only", sure=bool(text) and p >= READ_SURE)
        return _learned_first(
            self.digits, bgr, "digits", self._tesseract_number, _PLAUSIBLE_SPEED, confirm=True, expected=expected
        )

    def _read_stop(self, bgr: np.ndarray) -> Reading:
        if self.words is None:
            return self._tesseract_word(bgr)
        return _learned_first(self.words, bgr, "word", self._tesseract_word, _PLAUSIBLE_WORD)

    def _tesseract_number(self, bgr: np.ndarray) -> Reading:
        """Black digits inside a red ring, read by Tesseract.

        The brightest channel separates them from both: the ring is bright in red, the
        face bright in every channel, the digits dark in all. No single threshold suits
        every photo (shade, blur, a dim ring touching the digits), so a few binarisations
        are read and the plausible readings vote, weighted by Tesseract's confidence.
        """
        size = 192
        value, not_red = _without_red(cv2.resize(bgr, (size, size), interpolation=cv2.INTER_CUBIC))
        votes: dict[str, float] = {}
        tries: dict[str, list[float]] = {}
        for frac, shift, opening in _NUMBER_VARIANTS:
            region = _disc(size, frac)
            ink = _otsu_ink(value, region & not_red, shift)
            if opening:
                ink = cv2.morphologyEx(ink, cv2.MORPH_OPEN, np.ones((opening, opening), np.uint8))
            glyphs = _glyphs(ink, region, 0.14, 0.5)
            if glyphs is None:
                continue
            text, conf = _tesseract(glyphs, 7, "eng", "0123456789")
            text = text.replace(" ", "")
            if not text:
                continue
            weight = conf * (1.0 if _PLAUSIBLE_SPEED.match(text) else 0.2)
            votes[text] = votes.get(text, 0.0) + weight
            tries.setdefault(text, []).append(conf)
            if len(tries[text]) >= 2 and _PLAUSIBLE_SPEED.match(text) and min(tries[text]) >= 80:
                break  # two clean, agreeing readings: no need to look further
        if not votes:
            return Reading("", 0.0, "digits")
        text = max(votes, key=votes.__getitem__)
        return Reading(
            text, float(np.mean(tries[text])), f"digits/vote{len(tries[text])}of{sum(map(len, tries.values()))}"
        )

    def _tesseract_word(self, bgr: np.ndarray, words: tuple[str, ...] = ("STOP",)) -> Reading:
        """White capitals on a red octagon: the darkest channel is high only on the letters."""
        size = 192
        low = cv2.resize(bgr, (size, size), interpolation=cv2.INTER_CUBIC).min(axis=2)
        region = _disc(size, 0.72)
        ink = _otsu_ink(255 - low, region)  # letters become the dark side after inversion
        best = Reading("", 0.0, "word")
        glyphs = _glyphs(ink, region, 0.08, 0.4)
        candidates = [glyphs] if glyphs is not None else []
        candidates.append(_binarise(255 - low))
        for img in candidates:
            for psm in (7, 8):
                text, conf = _tesseract(img, psm, "eng", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
                if text and (text in words, conf) > (best.text in words, best.confidence):
                    best = Reading(text, conf, f"word/psm{psm}")
                if best.text in words and best.confidence >= 70:
                    return best
        return best

    def _read_free(self, bgr: np.ndarray) -> Reading:
        """General text (place names, distances) in the configured languages."""
        gray = _upscale(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), 120)
        best = Reading("", 0.0, "free")
        for dark in (True, False):
            text, conf = _tesseract(_binarise(gray, dark_text=dark), 7, self.languages, None)
            text = " ".join(text.split())
            if len(re.sub(r"[^0-9A-Za-zÀ-ÿ]", "", text)) >= 2 and conf > best.confidence:
                best = Reading(text, conf, f"free/psm7/{'dark' if dark else 'light'}")
        if best.confidence < self.min_confidence:
            return Reading("", best.confidence, best.mode)
        return best


def _learned_first(
    learned: LearnedReader,
    bgr: np.ndarray,
    name: str,
    tesseract: Callable[[np.ndarray], Reading],
    plausible: re.Pattern[str],
    confirm: bool = False,
    expected: str | None = None,
) -> Reading:
    """A learned reader's text; Tesseract gets a say only where that is unsure.

    Tesseract is weaker on the small, blurred signs of street photos (on held-out signs it
    turned right readings into wrong ones when asked too often), but it has seen far more
    type faces: where the learned reader is unsure (below an even chance), a confident,
    plausible Tesseract reading wins. The reading is `sure` at READ_SURE, or where the two
    readers agree. With `confirm`, Tesseract is asked to agree with a learned reading between
    an even chance and READ_SURE (it never overrules one there), unless the text is the
    `expected` one, which a sure class already vouches for.
    """
    text, p = learned.read(bgr)
    if text and p >= READ_SURE:
        return Reading(text, 100 * p, f"{name}/cnn", sure=True)
    if text and p >= LEARNED_SURE:
        if confirm and text != expected and plausible.match(text):
            second = tesseract(bgr)
            if second.text == text and second.confidence >= TESSERACT_SURE:
                return Reading(text, 100 * p, f"{name}/cnn+tesseract", sure=True)
        return Reading(text, 100 * p, f"{name}/cnn")
    fallback = tesseract(bgr)
    if plausible.match(fallback.text) and fallback.confidence >= TESSERACT_SURE:
        if fallback.text == text:
            return Reading(fallback.text, fallback.confidence, f"{fallback.mode}+cnn", sure=True)
        return fallback
    return Reading(text, 100 * p, f"{name}/cnn-unsure") if text else fallback


def text_matches_class(text: str, class_id: int) -> bool | None:
    """Whether what was read agrees with what the class says; None for classes without text."""
    expected = classes.get(class_id).text
    if expected is None:
        return None
    return text.strip().upper() == expected.upper()
