"""ONNX Runtime: the `.onnx` exports on the CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from roadsigns.detector.backends import Backend, fixed_shape


class OnnxGraph:
    """One ONNX graph, as a `Localiser` or a `Classifier`: its first input in, its first output out."""

    def __init__(self, path: Path, device: str) -> None:
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        graph_input = self.session.get_inputs()[0]
        self.input_name = graph_input.name
        self.input_shape = fixed_shape([d if isinstance(d, int) else None for d in graph_input.shape])
        # The photos (or crops) one call takes: a fixed batch axis (older exports), else any number.
        self.max_batch = graph_input.shape[0] if isinstance(graph_input.shape[0], int) else None

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run(None, {self.input_name: batch})[0])


BACKEND = Backend("onnx", "onnx", OnnxGraph, OnnxGraph)
