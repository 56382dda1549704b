"""PyTorch: the `.pt` files on CUDA or the CPU. The GPU path, and `auto`'s choice on a CUDA machine.

The localiser is ultralytics' network itself, called on our letterboxed batch: ultralytics
loads the checkpoint, `preprocess.py` does the letterbox and NMS as for the other backends.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from roadsigns.detector.backends import Backend, resolve_device


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
        self.net = net.to(device).float().fuse(verbose=False).eval()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            out = self.net(self.torch.from_numpy(batch).to(self.device))
        if isinstance(out, (list, tuple)):  # in eval mode: (decoded output, raw feature maps)
            out = out[0]
        return out.float().cpu().numpy()


class TorchClassifier:
    def __init__(self, path: Path, device: str) -> None:
        import torch

        from roadsigns.detector.classifier_net import load_classifier

        self.torch, self.device = torch, device
        self.net = load_classifier(path).to(device)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            return self.net(self.torch.from_numpy(batch).to(self.device)).float().cpu().numpy()


BACKEND = Backend("torch", "pt", TorchLocaliser, TorchClassifier, device=resolve_device)
