"""Find signs in a photo: a YOLO localiser on the whole photo, then a classifier on each crop.

`SignDetector.detect` is the plain function the Celery task, the CLI and the
evaluation all call. Each step is timed.

Three backends run the same trained models:
- `torch`: the `.pt` files through ultralytics, on CUDA or the CPU;
- `onnx`: the `.onnx` exports with ONNX Runtime on the CPU;
- `openvino`: the same `.onnx` exports with OpenVINO on the CPU, which runs them in
  bfloat16 where the CPU has it (AVX512-BF16, AMX): over twice ONNX Runtime's speed.
`auto` picks torch on a CUDA machine, else openvino. The CPU backends do their own
letterboxing and NMS (`preprocess.py`), so they load neither torch nor ultralytics.

Every backend runs a photo at the sizes `scales.plan` picks for it (its own resolution,
and a coarse pass for large photos), so a phone close-up is not blown up to fill a
dashcam-sized graph. A fixed-shape export (older registry versions) runs at its one shape.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import cv2
import numpy as np

from roadsigns.detector import scales
from roadsigns.detector.preprocess import INPUT_SIZE, NUM_CLASSES, decode_yolo, letterbox, standardise

BACKENDS = ("auto", "torch", "onnx", "openvino")


def shipped_weights(name: str) -> Path:
    return Path(str(resources.files("roadsigns.detector").joinpath("weights", name)))


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


def resolve_backend(backend: str, device: str) -> str:
    """`auto`: torch where a CUDA device will be used, else openvino."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}: use one of {', '.join(BACKENDS)}")
    if backend != "auto":
        return backend
    return "torch" if resolve_device(device).startswith("cuda") else "openvino"


def file_version(path: Path) -> str:
    """A short content hash: which exact weights served a job, when no registry version is known."""
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]
    return f"{Path(path).name}@sha256:{digest}"


def square_crop(image: np.ndarray, box: tuple[float, float, float, float], scale: float) -> np.ndarray:
    """A square around the box, `scale` times its longer side, padded by edge replication at borders."""
    x1, y1, x2, y2 = box
    side = max(x2 - x1, y2 - y1) * scale
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    left, top = int(round(cx - side / 2)), int(round(cy - side / 2))
    size = max(2, int(round(side)))
    h, w = image.shape[:2]
    pad = max(0, -left, -top, left + size - w, top + size - h)
    if pad:
        image = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        left, top = left + pad, top + pad
    return image[top : top + size, left : left + size]


@dataclass
class Found:
    bbox: tuple[float, float, float, float]  # x1, y1, x2, y2 in original pixels
    detector_confidence: float
    class_id: int
    class_probability: float
    crop: np.ndarray  # BGR, native resolution, square with margin

    @property
    def confidence(self) -> float:
        return self.detector_confidence * self.class_probability


@dataclass
class DetectorOutput:
    signs: list[Found]
    timings_ms: dict[str, float] = field(default_factory=dict)


class _TorchClassifier:
    def __init__(self, path: Path, device: str) -> None:
        import torch

        from roadsigns.detector.classifier_net import load_classifier

        self.torch, self.device = torch, device
        self.net = load_classifier(path).to(device)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        with self.torch.no_grad():
            logits = self.net(self.torch.from_numpy(x).to(self.device))
            return self.torch.softmax(logits, dim=1).cpu().numpy()


class Graph:
    """An ONNX graph on the CPU, run by ONNX Runtime (`onnx`) or OpenVINO (`openvino`).

    `input_shape` is the graph's declared input shape, None for a dynamic axis.
    """

    def __init__(self, path: Path, runtime: str) -> None:
        if runtime == "onnx":
            import onnxruntime as ort

            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            name = session.get_inputs()[0].name
            self.input_shape = [d if isinstance(d, int) else None for d in session.get_inputs()[0].shape]
            self._run = lambda x: session.run(None, {name: x})[0]
        elif runtime == "openvino":
            import openvino as ov

            core = ov.Core()
            model = core.read_model(str(path))
            self.input_shape = [d.get_length() if d.is_static else None for d in model.input(0).get_partial_shape()]
            compiled = core.compile_model(model, "CPU", {"PERFORMANCE_HINT": "LATENCY"})
            self._run = lambda x: compiled(x)[0]  # outputs are copied out of the request
        else:
            raise ValueError(f"no graph runtime {runtime!r}")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self._run(x))


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


class SignDetector:
    """Loads once (per worker process), then `detect(image_bgr)` per photo.

    The localiser proposes boxes down to `conf`; each proposal's confidence is the
    localiser's score times the classifier's probability for its class, and `detect`
    returns those at or above `min_confidence` (0 returns every proposal, as mAP needs).
    """

    def __init__(
        self,
        detector_weights: Path | None = None,
        classifier_weights: Path | None = None,
        device: str = "auto",
        imgsz: int = 1376,
        conf: float = 0.05,
        crop_scale: float = 1.2,
        versions: dict[str, str] | None = None,
        backend: str = "auto",
        min_confidence: float = 0.25,
        min_side: int = 320,
        coarse_side: int = 384,
    ) -> None:
        """`imgsz` is the longest side a photo is run at (larger ones are shrunk to it);
        `min_side` the shortest long side (thumbnails are enlarged to it); `coarse_side` the
        long side of the extra pass for large signs in large photos (0: none)."""
        t0 = time.perf_counter()
        self.backend = resolve_backend(backend, device)
        self.device = resolve_device(device) if self.backend == "torch" else "cpu"
        self.conf, self.crop_scale, self.min_confidence = conf, crop_scale, min_confidence
        self.imgsz, self.min_side, self.coarse_side = imgsz, min_side, coarse_side
        self.fixed_shape: tuple[int, int] | None = None
        ext = "pt" if self.backend == "torch" else "onnx"
        det_path = Path(detector_weights or shipped_weights(f"detector.{ext}"))
        clf_path = Path(classifier_weights or shipped_weights(f"classifier.{ext}"))
        if self.backend == "torch":
            from roadsigns.detector import offline

            offline.configure()
            from ultralytics import YOLO

            self.yolo = YOLO(str(det_path), task="detect")
            self.classifier = _TorchClassifier(clf_path, self.device)
        else:
            self.graph = Graph(det_path, self.backend)
            _, _, height, width = self.graph.input_shape
            if height is not None and width is not None:  # a fixed-shape export runs at its one shape
                self.fixed_shape = (int(height), int(width))
            clf = Graph(clf_path, self.backend)
            self.classifier = lambda x: softmax(clf(x))
        self.versions = versions or {"detector": file_version(det_path), "classifier": file_version(clf_path)}
        # One warm-up pass, so the first job does not pay for lazy initialisation.
        self.detect(np.zeros((64, 64, 3), np.uint8))
        self.load_seconds = time.perf_counter() - t0

    def passes(self, height: int, width: int) -> list[tuple[int, int]]:
        """The (height, width) inputs one photo of this size runs at."""
        if self.fixed_shape is not None:
            return [self.fixed_shape]
        return scales.plan(height, width, self.imgsz, self.min_side, self.coarse_side)

    def localise(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Boxes (N x 4, xyxy in image pixels) and localiser scores, best first, over every pass."""
        found = [self._localise_at(image_bgr, h, w) for h, w in self.passes(*image_bgr.shape[:2])]
        return scales.merge([b for b, _ in found], [s for _, s in found])

    def _localise_at(self, image_bgr: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        if self.backend == "torch":
            kwargs = {"imgsz": [height, width], "conf": self.conf, "device": self.device, "verbose": False}
            boxes = self.yolo.predict(image_bgr, **kwargs)[0].boxes
            return boxes.xyxy.cpu().numpy(), boxes.conf.cpu().numpy()
        blob, box = letterbox(image_bgr, height, width)
        return decode_yolo(self.graph(blob), box, image_bgr.shape, self.conf)

    def classify(self, crops: list[np.ndarray]) -> np.ndarray:
        """Class probabilities (N x 43) for BGR crops of any size."""
        if not crops:
            return np.zeros((0, NUM_CLASSES), np.float32)
        batch = np.stack(
            [
                cv2.cvtColor(cv2.resize(c, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
                for c in crops
            ]
        )
        return self.classifier(standardise(batch))

    def detect(self, image_bgr: np.ndarray, min_confidence: float | None = None) -> DetectorOutput:
        floor = self.min_confidence if min_confidence is None else min_confidence
        t0 = time.perf_counter()
        boxes, confs = self.localise(image_bgr)
        t1 = time.perf_counter()
        crops = [square_crop(image_bgr, tuple(b), self.crop_scale) for b in boxes]
        probs = self.classify(crops)
        t2 = time.perf_counter()
        found = []
        for box, conf, crop, p in zip(boxes, confs, crops, probs, strict=True):
            cls = int(p.argmax())
            sign = Found(tuple(float(v) for v in box), float(conf), cls, float(p[cls]), crop)
            if sign.confidence >= floor:
                found.append(sign)
        found.sort(key=lambda f: (f.bbox[0], f.bbox[1]))
        return DetectorOutput(found, {"detect_ms": (t1 - t0) * 1000, "classify_ms": (t2 - t1) * 1000})
