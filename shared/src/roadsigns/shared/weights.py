"""Model files as both model pools see them: where the shipped ones are, which exact file served.

The detector and the OCR pool each ship weights inside their package and record, for every
job, which file ran; both turn their graphs' logits into probabilities the same way.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray


def shipped(package: str, name: str = "") -> Path:
    """A file in `package`'s `weights/` folder (`shipped("roadsigns.ocr", "digits.onnx")`), or the folder."""
    return Path(str(resources.files(package).joinpath("weights", name)))


def file_version(path: Path) -> str:
    """`NAME@sha256:<12 hex>`: which exact weights served a job, when no registry version is known."""
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]
    return f"{Path(path).name}@sha256:{digest}"


def softmax(logits: NDArray[np.floating[Any]]) -> NDArray[np.floating[Any]]:
    """Probabilities along the last axis (classes per row, or characters per place)."""
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probabilities: NDArray[np.floating[Any]] = e / e.sum(axis=-1, keepdims=True)
    return probabilities
