"""Export the trained models to ONNX for the CPU path (ONNX Runtime)."""

from __future__ import annotations

import shutil
from pathlib import Path


def export_detector(weights: Path, out: Path) -> Path:
    """An ONNX graph with dynamic height and width (and batch).

    The service picks the input size per photo (`roadsigns.detector.scales`): a 300x400
    phone photo runs at its own size and a 1360x800 frame at 1376 wide, so no photo is
    blown up to fill one fixed shape. ONNX Runtime and OpenVINO both run such a graph.
    """
    from roadsigns.detector import offline

    offline.configure()
    from ultralytics import YOLO

    exported = YOLO(str(weights)).export(
        format="onnx", imgsz=640, simplify=True, dynamic=True, device="cpu", verbose=False
    )
    shutil.move(str(exported), out)
    return out


def export_classifier(state_dict_path: Path, out: Path) -> Path:
    """The classifier (one network or an ensemble, as saved) with a dynamic batch axis."""
    import torch

    from roadsigns.detector.classifier_net import INPUT_SIZE, load_classifier

    model = load_classifier(state_dict_path)
    dummy = torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE)
    torch.onnx.export(
        model,
        dummy,
        str(out),
        input_names=["images"],
        output_names=["logits"],
        dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    return out
