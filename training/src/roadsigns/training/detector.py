"""Fine-tune the YOLO sign localiser on native-resolution GTSDB tiles."""

from __future__ import annotations

import importlib.resources
import shutil
from pathlib import Path
from typing import Any

import yaml

from roadsigns.training.gtsdb import Box, build_tile_dataset


def resolve_weights(spec: str) -> Path:
    """`pkg:package/relative/path` names a file shipped inside an installed package."""
    if spec.startswith("pkg:"):
        package, _, rel = spec[4:].partition("/")
        path = Path(str(importlib.resources.files(package).joinpath(rel)))
    else:
        path = Path(spec)
    if not path.exists():
        raise FileNotFoundError(f"start weights not found: {spec} ({path})")
    return path


def prepare(
    images_dir: Path,
    gt: dict[str, list[Box]],
    train: list[str],
    val: list[str],
    cfg: dict[str, Any],
    work: Path,
    seed: int,
) -> Path:
    """Write the tile data set and its YOLO data yaml; return the yaml's path."""
    root = work / "detector-data"
    if root.exists():
        shutil.rmtree(root)
    for split, names in (("train", train), ("val", val)):
        build_tile_dataset(
            images_dir, gt, names, root / split, cfg["tile_size"], cfg["min_inside"], cfg["single_class"], seed
        )
    names = {0: "sign"} if cfg["single_class"] else {i: str(i) for i in range(43)}
    data_yaml = root / "data.yaml"
    data_yaml.write_text(
        yaml.safe_dump({"path": str(root.resolve()), "train": "train/images", "val": "val/images", "names": names})
    )
    return data_yaml


def train(data_yaml: Path, cfg: dict[str, Any], work: Path, resume: Path | None = None) -> tuple[Path, Path]:
    """Run ultralytics training on CPU or GPU; return the best checkpoint and the per-epoch results.csv.

    `time_hours` caps the training time: ultralytics then fits the number of epochs (and
    the learning-rate schedule) to it. `resume` continues an interrupted run from its
    `last.pt`, up to `epochs` in total (which may be fewer than first planned).
    """
    from roadsigns.detector import offline

    offline.configure()
    from ultralytics import YOLO

    if resume is not None:
        _set_total_epochs(resume, cfg["epochs"])
        model = YOLO(str(resume))
        model.train(resume=True, device=cfg.get("device", "cpu"))
        return _outputs(model)
    model = YOLO(str(resolve_weights(cfg["start_weights"])))
    model.train(
        data=str(data_yaml),
        imgsz=cfg["imgsz"],
        epochs=cfg["epochs"],
        batch=cfg["batch"],
        patience=cfg["patience"],
        project=str((work / "detector-runs").resolve()),
        name="run",
        exist_ok=True,
        workers=2,
        plots=False,
        device=cfg.get("device", "cpu"),
        fliplr=0.5,
        mosaic=1.0,
        verbose=False,
        seed=cfg.get("seed", 0),
        time=cfg.get("time_hours"),
    )
    return _outputs(model)


def _set_total_epochs(last: Path, epochs: int) -> None:
    """Ultralytics resumes with the checkpoint's own arguments; change its planned epoch count."""
    import torch

    ckpt = torch.load(last, map_location="cpu", weights_only=False)
    if ckpt["train_args"]["epochs"] != epochs:
        ckpt["train_args"]["epochs"] = epochs
        torch.save(ckpt, last)


def _outputs(model: Any) -> tuple[Path, Path]:
    best = Path(model.trainer.best)
    if not best.exists():
        best = Path(model.trainer.last)
    return best, Path(model.trainer.save_dir) / "results.csv"
