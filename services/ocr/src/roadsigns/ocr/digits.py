"""The learned speed-limit number reader: three digit places read by a small CNN.

Trained by `make train` (training/src/roadsigns/training/digits.py) on real GTSRB crops
and on rendered signs carrying every digit in every place, so it reads numbers no GTSRB
class has. The class never enters it: it sees only pixels.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path

import cv2
import numpy as np

SIZE = 32
BLANK = 10  # an empty digit place


def shipped_weights() -> Path:
    return Path(str(resources.files("roadsigns.ocr").joinpath("weights", "digits.onnx")))


class DigitReader:
    def __init__(self, path: Path | None = None) -> None:
        import onnxruntime as ort

        path = Path(path or shipped_weights())
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # an OCR process is one of several on the cores
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.version = f"{path.name}@sha256:{hashlib.sha256(path.read_bytes()).hexdigest()[:12]}"

    def read(self, crop_bgr: np.ndarray) -> tuple[str, float]:
        """The number on the sign and a confidence in 0..1 (product over the three places)."""
        small = cv2.resize(crop_bgr, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
        x = np.ascontiguousarray(small[:, :, ::-1].transpose(2, 0, 1)[None], dtype=np.float32)
        logits = self.session.run(None, {"images": x})[0][0]  # places x 11
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        p = e / e.sum(axis=1, keepdims=True)
        symbols = p.argmax(axis=1)
        return "".join(str(d) for d in symbols if d != BLANK), float(p.max(axis=1).prod())
