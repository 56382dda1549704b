"""ONNX Runtime: the `.onnx` exports, on the CPU, or on a CUDA device where the installed
onnxruntime build has the TensorRT or CUDA provider (`onnxruntime-gpu`; the project installs the
CPU build, whose device is always the CPU).

On CUDA the TensorRT provider comes first, in FP16 (`trt_fp16_enable`), its engines cached in
`roadsigns-trt` under the system's temporary folder, so a restarted process does not build them
again; the CUDA provider runs what TensorRT does not take (FP32, as exported); the CPU provider
the rest. `auto` never picks this backend (torch is the GPU default). Never run on a GPU: none
was lent to this work.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from roadsigns.detector.backends import Backend, fixed_shape, resolve_device

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def _available() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def device(requested: str) -> str:
    """A CUDA device when one is asked for (or `auto` finds one) and this onnxruntime build can use
    it; else the CPU."""
    if not any(p in _available() for p in GPU_PROVIDERS):
        return "cpu"
    resolved = resolve_device(requested)
    return resolved if resolved.startswith("cuda") else "cpu"


def providers(device: str, available: list[str]) -> list[Any]:
    """ONNX Runtime's providers for `device`, best first, among those `available`."""
    if not device.startswith("cuda"):
        return ["CPUExecutionProvider"]
    index = int(device.split(":", 1)[1]) if ":" in device else 0
    cache = str(Path(tempfile.gettempdir()) / "roadsigns-trt")
    chosen: list[Any] = []
    if "TensorrtExecutionProvider" in available:
        trt = {"device_id": index, "trt_fp16_enable": True, "trt_engine_cache_enable": True}
        chosen.append(("TensorrtExecutionProvider", {**trt, "trt_engine_cache_path": cache}))
    if "CUDAExecutionProvider" in available:
        chosen.append(("CUDAExecutionProvider", {"device_id": index}))
    return [*chosen, "CPUExecutionProvider"]


class OnnxGraph:
    """One ONNX graph, as a `Localiser` or a `Classifier`: its first input in, its first output out."""

    def __init__(self, path: Path, device: str) -> None:
        import onnxruntime as ort

        self.providers = providers(device, _available())
        self.session = ort.InferenceSession(str(path), providers=self.providers)
        graph_input = self.session.get_inputs()[0]
        self.input_name = graph_input.name
        self.input_shape = fixed_shape([d if isinstance(d, int) else None for d in graph_input.shape])
        # The photos (or crops) one call takes: a fixed batch axis (older exports), else any number.
        self.max_batch = graph_input.shape[0] if isinstance(graph_input.shape[0], int) else None

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run(None, {self.input_name: batch})[0])


BACKEND = Backend("onnx", "onnx", OnnxGraph, OnnxGraph, device=device)
