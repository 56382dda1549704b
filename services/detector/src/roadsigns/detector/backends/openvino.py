"""OpenVINO: the same `.onnx` exports on the CPU, in bfloat16 where the CPU has it (AVX512-BF16,
AMX): over twice ONNX Runtime's speed there. `auto`'s choice without CUDA.

The localiser's export takes any input size, and OpenVINO runs it at any: but a dynamic-shape
graph re-plans its memory whenever the shape changes, and a dashcam frame's two passes
(800x1376, then the 256x384 coarse one) change it twice a photo. On the five sample frames
that cost 97 ms a photo against 80 ms with a graph compiled for each shape. So a shape seen
a second time gets a graph compiled for it alone (0.2-0.4 s, once per process), up to
`STATIC_SHAPES` of them, the least recently used dropped past that; a shape seen once (a
stray phone photo's) runs on the dynamic graph and compiles nothing. The classifier's batch
changes with every photo too, but a graph per batch size measured no faster.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from roadsigns.detector.backends import Backend, fixed_shape

# Each static graph holds its own activations: 30 MB (256x384) to 80 MB (1376x1024) here.
STATIC_SHAPES = 4
# One stream on every core (LATENCY), its threads left unpinned: OpenVINO pins them to cores by
# default on Linux, and where other processes share those cores (the OCR pool, the tracker, the
# gateway beside a detector worker; any neighbour of the CLI) a pinned thread that lost its core
# cannot move to the free one while its partner waits for its share of each layer. Unpinned, the
# same work and the same results cost less CPU (issue 14: the queued detector process 188 -> 167 ms
# a photo, the bare pipeline 183 -> 164, medians of alternating runs; README "The pipeline, bare
# and queued").
CONFIG = {"PERFORMANCE_HINT": "LATENCY", "ENABLE_CPU_PINNING": False}


class OpenVinoGraph:
    """One ONNX graph compiled for the CPU, as a `Localiser` or a `Classifier`; with
    `static_shapes`, also compiled for each input shape it keeps meeting (see the module's doc)."""

    def __init__(self, path: Path, device: str, static_shapes: int = 0) -> None:
        import openvino as ov

        self.core, self.path, self.static_shapes = ov.Core(), path, static_shapes
        model = self.core.read_model(str(path))
        shape = model.input(0).get_partial_shape()
        self.input_shape = fixed_shape([d.get_length() if d.is_static else None for d in shape])
        # The photos (or crops) one call takes: a fixed batch axis (older exports), else any number.
        # A batch's size is part of the shape the static graphs below are kept for.
        self.max_batch = shape[0].get_length() if shape[0].is_static else None
        self.compiled = self.core.compile_model(model, "CPU", CONFIG)
        self.seen: Counter[tuple[int, ...]] = Counter()
        self.static: OrderedDict[tuple[int, ...], Any] = OrderedDict()  # shape -> its compiled graph, LRU first

    def _graph_for(self, shape: tuple[int, ...]) -> Any:
        if self.static_shapes == 0 or self.input_shape is not None:
            return self.compiled
        if shape in self.static:
            self.static.move_to_end(shape)
            return self.static[shape]
        self.seen[shape] += 1
        if self.seen[shape] < 2:
            return self.compiled
        model = self.core.read_model(str(self.path))
        model.reshape({model.input(0).get_any_name(): list(shape)})
        self.static[shape] = graph = self.core.compile_model(model, "CPU", CONFIG)
        if len(self.static) > self.static_shapes:
            self.static.popitem(last=False)
        return graph

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self._graph_for(batch.shape)(batch)[0])  # outputs are copied out of the request


def _localiser(path: Path, device: str) -> OpenVinoGraph:
    return OpenVinoGraph(path, device, static_shapes=STATIC_SHAPES)


BACKEND = Backend("openvino", "onnx", _localiser, OpenVinoGraph)
