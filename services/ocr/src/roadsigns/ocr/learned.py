"""The learned text readers: small CNNs that read a fixed number of character places.

`digits.onnx` reads a speed limit's number (three digit places), `words.onnx` the word
on a STOP-type sign (five capital-letter places). Both are trained by `make train`
(training/src/roadsigns/training/readers.py) on real GTSRB crops and on rendered signs
carrying every character in every place, so they read text no GTSRB class has ("90",
"HALT"). The class never enters them: they see only pixels. Each graph names its own
alphabet in its metadata. `ROADSIGNS_OCR_WEIGHTS_DIR` names a folder of other ones
(`weights_dir`).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from roadsigns.shared.weights import file_version, shipped, softmax

SIZE = 32
READERS = ("digits.onnx", "words.onnx")


def weights_dir(configured: Path | None = None) -> Path:
    """The folder the readers load from: `configured` (ROADSIGNS_OCR_WEIGHTS_DIR), else the shipped one."""
    folder = Path(configured) if configured is not None else shipped("roadsigns.ocr")
    missing = [name for name in READERS if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{folder}: no {' or '.join(missing)} (a text reader folder holds {', '.join(READERS)})"
        )
    return folder


class LearnedReader:
    def __init__(self, path: Path) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # an OCR process is one of several on the cores
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        if "alphabet" not in meta:
            raise ValueError(f"{path}: not a text reader (no 'alphabet' in its metadata)")
        self.alphabet = meta["alphabet"]
        self.version = file_version(path)

    def read(self, crop_bgr: np.ndarray) -> tuple[str, float]:
        """The text on the sign and a confidence in 0..1 (the product over its places)."""
        small = cv2.resize(crop_bgr, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
        x = np.ascontiguousarray(small[:, :, ::-1].transpose(2, 0, 1)[None], dtype=np.float32)
        logits = self.session.run(None, {"images": x})[0][0]  # places x (alphabet + blank)
        p = softmax(logits)
        blank = len(self.alphabet)
        text = "".join(self.alphabet[s] for s in p.argmax(axis=1) if s != blank)
        return text, float(p.max(axis=1).prod())
