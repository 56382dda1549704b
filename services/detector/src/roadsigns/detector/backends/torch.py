"""PyTorch: the `.pt` files on CUDA or the CPU. The GPU path, and `auto`'s choice on a CUDA machine.

On CUDA both networks run in half precision (FP16): tensor cores take it at several times float32's
rate, and YOLO's predictor does the same (`half=True`). Inputs are cast on the device, outputs go
back as float32, so nothing around the models changes. On the CPU, where half precision is slow
or unsupported, they stay float32. Both take any batch size (roadsigns.detector.batching).

The localiser is ultralytics' network itself, called on our letterboxed batch: ultralytics
loads the checkpoint, `preprocess.py` does the letterbox and NMS as for the other backends.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from roadsigns.detector.backends import Backend, resolve_device


def _dtype(torch: Any, device: str) -> Any:
    """FP16 on a CUDA device, float32 elsewhere."""
    return torch.float16 if str(device).startswith("cuda") else torch.float32


class TorchLocaliser:
    input_shape: tuple[int, int] | None = None  # any multiple of the stride

    def __init__(self, path: Path, device: str) -> None:
        from roadsigns.detector import offline

        offline.configure()
        import torch
        from ultralytics import YOLO

        self.torch, self.device = torch, device
        # Convolutions and batch norms fused, as ultralytics' own predictor runs it.
        net: Any = YOLO(str(path), task="detect").model  # typed as its path too, before it is loaded
        self.dtype = _dtype(torch, device)
        self.net = net.to(device).float().fuse(verbose=False).eval().to(self.dtype)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            out = self.net(self.torch.from_numpy(batch).to(self.device).to(self.dtype))
        if isinstance(out, (list, tuple)):  # in eval mode: (decoded output, raw feature maps)
            out = out[0]
        return out.float().cpu().numpy()


class TorchClassifier:
    def __init__(self, path: Path, device: str) -> None:
        import torch

        from roadsigns.detector.classifier_net import load_classifier

        self.torch, self.device = torch, device
        self.dtype = _dtype(torch, device)
        self.net = load_classifier(path).to(device).to(self.dtype)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            x = self.torch.from_numpy(batch).to(self.device).to(self.dtype)
            return self.net(x).float().cpu().numpy()


BACKEND = Backend("torch", "pt", TorchLocaliser, TorchClassifier, device=resolve_device)
