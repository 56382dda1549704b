"""Keep ultralytics off the network.

Ultralytics reaches for GitHub to fetch fonts, weights and missing packages, and
phones home for analytics. None of that is reachable (or wanted) in production, so
every process that imports ultralytics calls `configure()` first.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

_DONE = False


def _font_source() -> Path | None:
    try:
        import matplotlib  # ultralytics depends on it, and it ships DejaVuSans

        path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        return path if path.exists() else None
    except ImportError:
        return None


def configure(config_dir: str | os.PathLike[str] | None = None, threads: int | None = None) -> None:
    """Set offline env vars, place fonts, turn off sync and integrations. Call before `import ultralytics`."""
    global _DONE
    if _DONE:
        return
    cfg = Path(config_dir or os.environ.get("YOLO_CONFIG_DIR") or Path.home() / ".config" / "roadsigns-yolo")
    cfg.mkdir(parents=True, exist_ok=True)
    os.environ["YOLO_CONFIG_DIR"] = str(cfg)
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "false"
    os.environ.setdefault("YOLO_VERBOSE", "false")
    font = _font_source()
    fonts_dir = cfg / "Ultralytics"
    fonts_dir.mkdir(parents=True, exist_ok=True)
    if font is not None:
        for name in ("Arial.ttf", "Arial.Unicode.ttf"):
            if not (fonts_dir / name).exists():
                shutil.copyfile(font, fonts_dir / name)

    from ultralytics.utils import SETTINGS, torch_utils

    # No analytics, and no integration callbacks: training logs to MLflow itself.
    off = {
        "sync": False,
        "mlflow": False,
        "tensorboard": False,
        "wandb": False,
        "clearml": False,
        "comet": False,
        "dvc": False,
        "raytune": False,
        "neptune": False,
        "hub": False,
        "vscode_msg": False,
        "openvino_msg": False,
    }
    SETTINGS.update({k: v for k, v in off.items() if k in SETTINGS})
    # Ultralytics pins torch to one thread on small machines; use every core we are given.
    n = threads or os.cpu_count() or 1
    torch_utils.NUM_THREADS = n
    import torch

    torch.set_num_threads(n)
    _DONE = True
