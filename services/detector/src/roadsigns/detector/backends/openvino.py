"""OpenVINO: the same `.onnx` exports on the CPU, in bfloat16 where the CPU has it (AVX512-BF16,
AMX): over twice ONNX Runtime's speed there. `auto`'s choice without CUDA."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from roadsigns.detector.backends import Backend, fixed_shape


class OpenVinoGraph:
    """One ONNX graph compiled for the CPU, as a `Localiser` or a `Classifier`."""

    def __init__(self, path: Path, device: str) -> None:
        import openvino as ov

        core = ov.Core()
        model = core.read_model(str(path))
        shape = model.input(0).get_partial_shape()
        self.input_shape = fixed_shape([d.get_length() if d.is_static else None for d in shape])
        self.compiled = core.compile_model(model, "CPU", {"PERFORMANCE_HINT": "LATENCY"})

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self.compiled(batch)[0])  # outputs are copied out of the request


BACKEND = Backend("openvino", "onnx", OpenVinoGraph, OpenVinoGraph)
