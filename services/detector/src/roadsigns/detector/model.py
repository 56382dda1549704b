"""Find signs in a photo: a YOLO localiser on the whole photo, then a classifier on each crop.

`SignDetector.detect` is the plain function the Celery task, the CLI and the
evaluation all call. Each step is timed.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import cv2
import numpy as np

from roadsigns.detector.classifier_net import INPUT_SIZE, NUM_CLASSES, standardise


def shipped_weights(name: str) -> Path:
    return Path(str(resources.files("roadsigns.detector").joinpath("weights", name)))


def resolve_device(device: str) -> str:
    """`auto` picks the first CUDA device when there is one, else the CPU."""
    if device != "auto":
        return device
    import torch

    return "cuda:0" if torch.cuda.is_available() else "cpu"


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

        from roadsigns.detector.classifier_net import SignNet

        self.torch, self.device = torch, device
        self.net = SignNet()
        self.net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        self.net.eval().to(device)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        with self.torch.no_grad():
            logits = self.net(self.torch.from_numpy(x).to(self.device))
            return self.torch.softmax(logits, dim=1).cpu().numpy()


class _OnnxClassifier:
    def __init__(self, path: Path) -> None:
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        logits = self.session.run(None, {"images": x})[0]
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)


def onnx_input_size(path: Path) -> tuple[int, int]:
    """(height, width) a fixed-shape ONNX detector was exported at."""
    import ast

    import onnxruntime as ort

    meta = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_modelmeta()
    h, w = ast.literal_eval(meta.custom_metadata_map["imgsz"])
    return int(h), int(w)


class SignDetector:
    """Loads once (per worker process), then `detect(image_bgr)` per photo.

    `backend="torch"` runs the `.pt` files with PyTorch (CPU or CUDA); `backend="onnx"`
    runs the `.onnx` exports with ONNX Runtime on the CPU.
    """

    def __init__(
        self,
        detector_weights: Path | None = None,
        classifier_weights: Path | None = None,
        device: str = "auto",
        imgsz: int = 1376,
        conf: float = 0.25,
        crop_scale: float = 1.2,
        versions: dict[str, str] | None = None,
        backend: str = "torch",
    ) -> None:
        from roadsigns.detector import offline

        offline.configure()
        from ultralytics import YOLO

        t0 = time.perf_counter()
        if backend not in ("torch", "onnx"):
            raise ValueError(f"unknown backend {backend!r}: use torch or onnx")
        ext = "pt" if backend == "torch" else "onnx"
        self.backend = backend
        self.device = resolve_device(device) if backend == "torch" else "cpu"
        self.conf, self.crop_scale = conf, crop_scale
        det_path = Path(detector_weights or shipped_weights(f"detector.{ext}"))
        clf_path = Path(classifier_weights or shipped_weights(f"classifier.{ext}"))
        self.yolo = YOLO(str(det_path), task="detect")
        # An ONNX graph has the fixed input shape it was exported at.
        self.imgsz: int | tuple[int, int] = imgsz if backend == "torch" else onnx_input_size(det_path)
        self.classifier = _TorchClassifier(clf_path, self.device) if backend == "torch" else _OnnxClassifier(clf_path)
        self.versions = versions or {"detector": file_version(det_path), "classifier": file_version(clf_path)}
        # One warm-up pass, so the first job does not pay for lazy initialisation.
        self.yolo.predict(np.zeros((64, 64, 3), np.uint8), imgsz=self.imgsz, device=self.device, verbose=False)
        self.load_seconds = time.perf_counter() - t0

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

    def detect(self, image_bgr: np.ndarray) -> DetectorOutput:
        t0 = time.perf_counter()
        result = self.yolo.predict(image_bgr, imgsz=self.imgsz, conf=self.conf, device=self.device, verbose=False)[0]
        t1 = time.perf_counter()
        boxes = result.boxes.xyxy.cpu().numpy() if result.boxes is not None else np.zeros((0, 4))
        confs = result.boxes.conf.cpu().numpy() if result.boxes is not None else np.zeros((0,))
        crops = [square_crop(image_bgr, tuple(b), self.crop_scale) for b in boxes]
        probs = self.classify(crops)
        t2 = time.perf_counter()
        found = []
        for box, conf, crop, p in zip(boxes, confs, crops, probs, strict=False):
            cls = int(p.argmax())
            found.append(Found(tuple(float(v) for v in box), float(conf), cls, float(p[cls]), crop))
        found.sort(key=lambda f: (f.bbox[0], f.bbox[1]))
        return DetectorOutput(found, {"detect_ms": (t1 - t0) * 1000, "classify_ms": (t2 - t1) * 1000})
