"""Detector backends by name: each runs the same trained localiser and classifier on one runtime.

A backend is a module in this package with a `BACKEND`: which weight files it runs and how to
load a `Localiser` and a `Classifier` from them. `REGISTRY` names them; adding one is a module
plus a line there. `SignDetector` does the rest the same way for every backend: letterbox,
YOLO decoding and NMS (`preprocess.py`), crops, softmax.

This module imports no runtime and no array library, so `Settings` can ask it for the allowed
values of `ROADSIGNS_BACKEND` (`names()`) without loading any model code.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import numpy as np

AUTO = "auto"  # torch where a CUDA device will be used, else openvino

REGISTRY: dict[str, str] = {
    "torch": "roadsigns.detector.backends.torch",
    "onnx": "roadsigns.detector.backends.onnx",
    "openvino": "roadsigns.detector.backends.openvino",
}


class Localiser(Protocol):
    """The YOLO localiser: letterboxed photos in, the head's raw output out.

    In: N x 3 x H x W float32 RGB in 0..1 (`preprocess.letterbox`). Out: N x (4 + classes) x
    anchors, box centre, width and height in input pixels, then class scores
    (`preprocess.decode_yolo` reads it).
    """

    # (height, width) of a fixed-shape export, which runs only at that shape; None: any
    # multiple of the stride.
    input_shape: tuple[int, int] | None

    def __call__(self, batch: np.ndarray) -> np.ndarray: ...


class Classifier(Protocol):
    """The 43-class crop classifier: standardised crops (N x 3 x 32 x 32 float32) in, logits (N x 43) out,
    and a 44th column, the sign gate's logit, from a classifier trained with one (`classifier_net`)."""

    def __call__(self, batch: np.ndarray) -> np.ndarray: ...


def _cpu(requested: str) -> str:
    return "cpu"


@dataclass(frozen=True)
class Backend:
    name: str
    weights_ext: str  # the files it runs: detector.<ext> and classifier.<ext> ("pt" or "onnx")
    localiser: Callable[[Path, str], Localiser]  # (weights file, device) -> Localiser
    classifier: Callable[[Path, str], Classifier]
    # ROADSIGNS_DEVICE ("auto", "cpu", "cuda:1") -> the device it runs on; CPU-only runtimes ignore it.
    device: Callable[[str], str] = _cpu


def names() -> tuple[str, ...]:
    """Every value ROADSIGNS_BACKEND takes."""
    return (AUTO, *REGISTRY)


def _cuda_available() -> bool:
    if not os.path.exists("/dev/nvidiactl"):  # no NVIDIA driver: skip importing torch to ask
        return False
    import torch

    return torch.cuda.is_available()


def resolve_device(device: str) -> str:
    """`auto` picks the first CUDA device when there is one, else the CPU."""
    if device != "auto":
        return device
    return "cuda:0" if _cuda_available() else "cpu"


def resolve(name: str, device: str = "auto") -> str:
    """The registered backend `name` stands for on `device`: `auto` is torch on CUDA, else openvino."""
    if name == AUTO:
        return "torch" if resolve_device(device).startswith("cuda") else "openvino"
    if name not in REGISTRY:
        raise ValueError(f"unknown detector backend {name!r}: use one of {', '.join(names())}")
    return name


def load(name: str, device: str = "auto") -> Backend:
    """The backend `name` (or `auto`) resolves to on `device`; imports its module, not yet its runtime."""
    backend: Backend = importlib.import_module(REGISTRY[resolve(name, device)]).BACKEND
    return backend


def fixed_shape(input_shape: list[int | None]) -> tuple[int, int] | None:
    """(height, width) of an N x C x H x W graph input whose spatial axes are both fixed, else None."""
    *_, height, width = input_shape
    return (int(height), int(width)) if height is not None and width is not None else None
