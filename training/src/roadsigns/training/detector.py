"""Fine-tune the YOLO sign localiser: native-resolution GTSDB tiles, then pictures of every scale.

Three stages share this code (training/config.yaml): `detector` fine-tunes the COCO start
weights on native-resolution tiles of GTSDB photos (small dashcam signs); `detector_scale`
continues from that result on the same tiles plus zoomed views and pasted signs
(`scenes.py`), so that a sign filling a phone photo is found as well as a 16 px one;
the optional `detector_refine` continues once more on freshly drawn pictures at a lower
learning rate (measured and not shipped: see its comment in training/config.yaml).
"""

from __future__ import annotations

import importlib.resources
import shutil
from pathlib import Path
from typing import Any

import yaml

from roadsigns.training.gtsdb import Box, build_tile_dataset
from roadsigns.training.scenes import build_scale_dataset


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
    crops: tuple[Any, Any] | None = None,
) -> Path:
    """Write the data set and its YOLO data yaml into WORK/<cfg name>-data; return the yaml's path.

    Tiles always; zoomed views and pasted signs when the stage asks for them (`zoomed`,
    `pasted`: counts for training; a tenth as many are made from the validation photos).
    """
    root = work / f"{cfg['name']}-data"
    if root.exists():
        shutil.rmtree(root)
    for split, names in (("train", train), ("val", val)):
        build_tile_dataset(
            images_dir, gt, names, root / split, cfg["tile_size"], cfg["min_inside"], cfg["single_class"], seed
        )
        share = 1.0 if split == "train" else 0.1
        zoomed, pasted = round(cfg.get("zoomed", 0) * share), round(cfg.get("pasted", 0) * share)
        if zoomed or pasted:
            build_scale_dataset(images_dir, gt, names, root / split, zoomed, pasted, seed + (split == "val"), crops)
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
    tunable = ("mosaic", "scale", "degrees", "perspective", "close_mosaic", "optimizer", "lr0", "warmup_epochs")
    augment = {k: cfg[k] for k in tunable if k in cfg}
    model.train(
        data=str(data_yaml),
        imgsz=cfg["imgsz"],
        epochs=cfg["epochs"],
        batch=cfg["batch"],
        patience=cfg["patience"],
        project=str((work / "detector-runs").resolve()),
        name=cfg["name"],
        exist_ok=True,
        workers=2,
        plots=False,
        device=cfg.get("device", "cpu"),
        fliplr=0.5,
        **{"mosaic": 1.0, **augment},
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
