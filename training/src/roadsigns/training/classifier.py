"""Train the 43-class crop classifier on GTSRB-format crops, split by physical sign."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from roadsigns.detector.classifier_net import SignEnsemble, SignNet, standardise

# The classes other countries paint with a yellow face where Germany's is white: Sweden, Finland,
# Iceland, Poland and others do so for warning triangles (11, 18-31) and the give-way sign (13),
# some also for the prohibitory discs (speed limits, no overtaking, no vehicles: 0-5, 7-10, 15,
# 16) and their restriction-ends signs (6, 32, 41, 42). The same pictogram, another face colour.
YELLOW_FACED = frozenset({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 16, *range(18, 33), 41, 42})


def yellow_face(crop_rgb: np.ndarray, hue: int = 26, saturation: int = 190) -> np.ndarray:
    """An RGB crop of a sign (GTSRB's: 32x32) with its white face painted yellow (OpenCV `hue`
    0-180), its lightness kept: the face is the pale, unsaturated pixels within the middle of the
    crop (a GTSRB crop has a 10 % margin), as bright as most of that middle. Pale sky round a
    sign's rim may turn yellow too; dark digits, pictograms and the red rim stay as they were."""
    import cv2

    hsv = cv2.cvtColor(crop_rgb, cv2.COLOR_RGB2HSV)
    h, w = crop_rgb.shape[:2]
    yy, xx = np.mgrid[:h, :w]
    centre = (yy - (h - 1) / 2) ** 2 + (xx - (w - 1) / 2) ** 2 < (0.42 * min(h, w)) ** 2
    value = hsv[..., 2].astype(np.float32)
    face = centre & (hsv[..., 1] < 70) & (value >= 0.9 * np.percentile(value[centre], 60))
    hsv[..., 0][face], hsv[..., 1][face] = hue, saturation
    out = crop_rgb.copy()  # the rest as it was, not as an HSV round trip rounds it
    out[face] = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[face]
    return out


def yellow_faced(
    images: np.ndarray, labels: np.ndarray | None = None, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Every crop of a `YELLOW_FACED` class (`labels` None: every crop) with a yellow face, the others
    as they are; with `rng`, each its own shade (hue 20-30, saturation 140-230), else one."""
    out = images.copy()
    which = np.ones(len(images), bool) if labels is None else np.isin(labels, list(YELLOW_FACED))
    for i in np.nonzero(which)[0]:
        shade = {} if rng is None else {"hue": int(rng.integers(20, 31)), "saturation": int(rng.integers(140, 231))}
        out[i] = yellow_face(images[i], **shade)
    return out


def split_by_track(
    labels: np.ndarray, track: np.ndarray, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of train and validation crops; every frame of a physical sign lands on one side."""
    rng = np.random.default_rng(seed)
    train_idx, val_idx = [], []
    for cls in np.unique(labels):
        tracks = np.unique(track[labels == cls])
        rng.shuffle(tracks)
        n_val = max(1, round(len(tracks) * val_fraction))
        val_tracks = set(tracks[:n_val].tolist())
        members = np.flatnonzero(labels == cls)
        is_val = np.array([t in val_tracks for t in track[members]])
        val_idx.append(members[is_val])
        train_idx.append(members[~is_val])
    return np.concatenate(train_idx), np.concatenate(val_idx)


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Small rotations, scale changes, shifts and contrast changes, as a camera would give."""
    n = x.shape[0]
    angle = (torch.rand(n, generator=gen) - 0.5) * 2 * math.radians(12)
    scale = 1 + (torch.rand(n, generator=gen) - 0.5) * 0.2
    shift = (torch.rand(n, 2, generator=gen) - 0.5) * 0.2
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
    gain = 1 + (torch.rand(n, 1, 1, 1, generator=gen) - 0.5) * 0.4
    return x * gain


def _degrade(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """What other cameras and countries add, on standardised crops: a colour cast, blur, sensor
    noise and a covered patch (a pole, a sticker, a branch), each on part of the batch."""
    n = x.shape[0]
    cast = 1 + (torch.rand(n, 3, 1, 1, generator=gen) - 0.5) * 0.3
    x = x * cast
    blur = torch.rand(n, generator=gen) < 0.3
    if blur.any():
        kernel = torch.tensor([1.0, 2.0, 1.0])
        kernel = (kernel[:, None] * kernel[None, :] / 16).expand(3, 1, 3, 3)
        x[blur] = F.conv2d(F.pad(x[blur], (1, 1, 1, 1), mode="replicate"), kernel, groups=3)
    noisy = (torch.rand(n, 1, 1, 1, generator=gen) < 0.3).float()
    x = x + noisy * torch.randn(x.shape, generator=gen) * 0.15
    covered = torch.rand(n, generator=gen) < 0.2
    for i in torch.nonzero(covered).flatten().tolist():
        size = int(torch.randint(6, 13, (1,), generator=gen))
        top, left = (int(v) for v in torch.randint(0, x.shape[-1] - size, (2,), generator=gen))
        x[i, :, top : top + size, left : left + size] = torch.randn(3, 1, 1, generator=gen)
    return x


def _low_res(x: torch.Tensor, gen: torch.Generator, share: float) -> torch.Tensor:
    """`share` of the batch shrunk to 8-20 px and enlarged back: what a far sign's crop holds
    once the service enlarges it to the classifier's input (a 12 px sign has 12 px of detail)."""
    n, side = x.shape[0], x.shape[-1]
    x = x.clone()
    for i in torch.nonzero(torch.rand(n, generator=gen) < share).flatten().tolist():
        small = int(torch.randint(8, 21, (1,), generator=gen))
        low = F.interpolate(x[i : i + 1], size=(small, small), mode="area")
        x[i : i + 1] = F.interpolate(low, size=(side, side), mode="bilinear", align_corners=False)
    return x


def evaluate(model: torch.nn.Module, images: np.ndarray, labels: np.ndarray, batch: int = 512) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(images), batch):
            logits = model(torch.from_numpy(standardise(images[i : i + batch])))
            correct += int((logits.argmax(1).numpy() == labels[i : i + batch]).sum())
    return correct / max(1, len(images))


def train(
    images: np.ndarray,
    labels: np.ndarray,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    cfg: dict[str, Any],
    seed: int,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    start: dict[str, torch.Tensor] | None = None,
) -> tuple[SignNet, float]:
    """Train one network with AdamW, a one-cycle schedule and label smoothing; return it and its val accuracy.
    `start`: a trained network's state to continue from (`finetune`), else a fresh one.

    The model is the one after the last epoch: the schedule anneals the learning rate to
    nearly zero, so there is no need to pick a checkpoint by the held-out tracks, whose
    accuracy is then an honest estimate. Their per-epoch accuracy is reported, not used.
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = SignNet(width=int(cfg.get("width", 32)))
    if start is not None:
        model.load_state_dict(start)
    degrade = bool(cfg.get("degrade", False))
    low_res = float(cfg.get("low_res", 0.0))
    # The share of each batch's yellow-faceable crops shown with a yellow face (yellow_faced).
    yellow = float(cfg.get("yellow_faces", 0.0))
    # Channels-last convolutions train 1.6x faster than the default layout on this CPU.
    model = model.to(memory_format=torch.channels_last)
    x_train = torch.from_numpy(standardise(images[train_idx]))
    y_train = torch.from_numpy(labels[train_idx].astype(np.int64))
    if yellow:
        shades = np.random.default_rng(seed)
        x_yellow = torch.from_numpy(standardise(yellow_faced(images[train_idx], labels[train_idx], shades)))
        can_yellow = torch.from_numpy(np.isin(labels[train_idx], list(YELLOW_FACED)))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    steps = cfg["epochs"] * math.ceil(len(x_train) / cfg["batch"])
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg["lr"], total_steps=steps, pct_start=0.15)
    val_acc = 0.0
    for epoch in range(cfg["epochs"]):
        model.train()
        t0 = time.perf_counter()
        order = torch.randperm(len(x_train), generator=gen)
        total_loss = 0.0
        for i in range(0, len(order), cfg["batch"]):
            idx = order[i : i + cfg["batch"]]
            x = x_train[idx]
            if yellow:
                swap = can_yellow[idx] & (torch.rand(len(idx), generator=gen) < yellow)
                x = torch.where(swap[:, None, None, None], x_yellow[idx], x)
            x = _augment(x, gen)
            if low_res:
                x = _low_res(x, gen, low_res)
            if degrade:
                x = _degrade(x, gen)
            logits = model(x.contiguous(memory_format=torch.channels_last))
            loss = F.cross_entropy(logits, y_train[idx], label_smoothing=cfg["label_smoothing"])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total_loss += loss.item() * len(idx)
        val_acc = evaluate(model, images[val_idx], labels[val_idx]) if len(val_idx) else 0.0
        if on_epoch is not None:
            on_epoch(
                epoch,
                {
                    "train_loss": total_loss / len(order),
                    "val_accuracy": val_acc,
                    "epoch_seconds": time.perf_counter() - t0,
                },
            )
    model.eval()
    return model, val_acc


def train_ensemble(
    images: np.ndarray,
    labels: np.ndarray,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    cfg: dict[str, Any],
    on_epoch: Callable[[int, int, dict[str, float]], None] | None = None,
) -> tuple[SignEnsemble, list[float], float]:
    """One member per seed in `cfg["seeds"]`; the ensemble, each member's val accuracy, and the ensemble's.

    With `cfg["finetune"]` (settings that replace the recipe's: epochs, lr, yellow_faces), each
    member then continues from its trained state for that many epochs more. `on_epoch(member,
    epoch, metrics)` reports each member's epochs as they finish, the fine-tune's numbered on.
    """
    members, accuracies = [], []
    for k, seed in enumerate(cfg["seeds"]):
        report = None if on_epoch is None else (lambda epoch, metrics, k=k: on_epoch(k, epoch, metrics))
        member, acc = train(images, labels, train_idx, val_idx, cfg, int(seed), on_epoch=report)
        if cfg.get("finetune"):
            more = None if on_epoch is None else (lambda e, m, k=k: on_epoch(k, int(cfg["epochs"]) + e, m))
            tune = {**cfg, **cfg["finetune"]}
            member, acc = train(images, labels, train_idx, val_idx, tune, int(seed), more, member.state_dict())
        members.append(member)
        accuracies.append(acc)
    ensemble = SignEnsemble(len(members), int(cfg.get("width", 32)))
    for slot, member in zip(ensemble.members, members, strict=True):
        slot.load_state_dict(member.state_dict())
    ensemble.eval()
    return ensemble, accuracies, evaluate(ensemble, images[val_idx], labels[val_idx]) if len(val_idx) else 0.0
