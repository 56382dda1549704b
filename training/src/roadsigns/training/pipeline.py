"""`roadsigns-train`: data -> detector, classifier and readers -> trained files, tracked in MLflow.

One command, parameters in a YAML file (training/config.yaml). Every run logs its
parameters, per-epoch metrics, the model files and the evaluation report to MLflow,
and registers both models in the MLflow Model Registry under an alias.

A run writes its files into `output_dir` (.train/weights, ignored by git), never into the
packages: the `ship` stage, run on its own (`make ship`), copies them into the package
folders the services load, so shipping new weights is a step of its own and a diff to review.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from roadsigns.shared.weights import shipped
from roadsigns.training import classifier as clf_train
from roadsigns.training import detector as det_train
from roadsigns.training import reviews
from roadsigns.training.export import export_classifier, export_detector
from roadsigns.training.faces import resolve as resolve_faces
from roadsigns.training.gtsdb import Box, read_gt, split_names
from roadsigns.training.scenes import ood_sets, other_signs_gt


def _metric_name(key: str) -> str:
    return re.sub(r"[^0-9A-Za-z_\-./ ]", "_", key).strip("_")


def load_config(path: Path, overrides: list[str]) -> dict[str, Any]:
    cfg = yaml.safe_load(Path(path).read_text())
    for item in overrides:  # section.key=value, value parsed as YAML
        key, _, raw = item.partition("=")
        node = cfg
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = yaml.safe_load(raw)
    return cfg


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def log_epochs(results_csv: Path, stage: str = "detector") -> None:
    """Every epoch's row of ultralytics' results.csv as MLflow metrics (resumed epochs included)."""
    import csv

    import mlflow

    with open(results_csv) as f:
        for row in csv.DictReader(f):
            step = int(float(row.pop("epoch")))
            metrics = {_metric_name(f"{stage}/{k.strip()}"): float(v) for k, v in row.items() if v.strip()}
            mlflow.log_metrics(metrics, step=step)


def photo_split(data: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(train, held-out) GTSDB photo names: chosen by photo, never by sign."""
    names = sorted(p.name for p in Path(data["gtsdb_images"]).iterdir() if p.suffix.lower() in {".jpg", ".png", ".ppm"})
    return split_names(names, float(data["val_fraction_photos"]), int(data["seed"]))


def other_signs(data: dict[str, Any]) -> dict[str, list[Box]]:
    """Signs outside the 43 classes in the GTSDB photos (`data.other_signs`, class -1 lines), by photo.

    GTSDB boxes only its 43 classes, so a parking, pedestrian-crossing or information sign in
    its photos is background to a localiser trained on them, and it learns to pass such signs
    by. The file lists them: each a proposal of the shipped localiser, not on a GTSDB box,
    looked at and kept by hand (training/config.yaml; README, "Every sign, not only the 43").
    A detector stage with `other_signs: true` trains on them as signs; the held-out set's
    `gt-all.txt` holds them too.
    """
    path = data.get("other_signs")
    if not path:
        return {}
    boxes = read_gt(Path(path))
    wrong = [f"{name}: class {b.class_id}" for name, bs in boxes.items() for b in bs if b.class_id != -1]
    if wrong:
        raise ValueError(f"{path} lists only signs outside the 43 (class -1); found {wrong[0]}")
    return boxes


def with_other_signs(gt: dict[str, list[Box]], extra: dict[str, list[Box]]) -> dict[str, list[Box]]:
    """GTSDB's boxes and the other signs of the same photos, one list a photo."""
    return {name: [*gt.get(name, []), *extra.get(name, [])] for name in set(gt) | set(extra)}


def crop_split(data: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """GTSRB images, labels, and (train, held-out) indices: chosen by physical sign (track)."""
    npz = np.load(data["gtsrb_npz"])
    images, labels, track = npz["images"], npz["labels"].astype(np.int64), npz["track"]
    train_idx, val_idx = clf_train.split_by_track(labels, track, float(data["val_fraction_tracks"]), int(data["seed"]))
    return images, labels, train_idx, val_idx


def write_heldout(data: dict[str, Any], out: Path) -> dict[str, Any]:
    """The held-out evaluation set in the CLI's formats: OUT/images, OUT/gt.txt, OUT/gtsrb-val.npz,
    the out-of-domain sets OUT/ood/{zoomed,downscaled,pasted,large,yellow,closeup}/ (`scenes.ood_sets`), and
    OUT/ood/gtsrb-val-yellow.npz: the held-out crops of classes other countries paint yellow-faced,
    so painted (`classifier.yellow_faced`).

    The same split training uses (same config, same seed), so these photos and crops never
    reached training; `roadsigns evaluate` then measures on them.
    """
    _, val_names = photo_split(data)
    images_dir = Path(data["gtsdb_images"]).resolve()
    (out / "images").mkdir(parents=True, exist_ok=True)
    for name in val_names:
        link = out / "images" / name
        if not link.is_symlink():
            link.symlink_to(images_dir / name)
    keep = set(val_names)
    gt_lines = [line for line in Path(data["gtsdb_gt"]).read_text().splitlines() if line.split(";", 1)[0] in keep]
    (out / "gt.txt").write_text("\n".join(gt_lines) + "\n")
    # Every sign, not only the 43 classes: what "all signs found" and a report's precision are counted against.
    extra = [
        f"{name};{b.left};{b.top};{b.right};{b.bottom};-1" for name, bs in sorted(other_signs(data).items()) for b in bs
    ]
    extra = [line for line in extra if line.split(";", 1)[0] in keep]
    (out / "gt-all.txt").write_text("\n".join(gt_lines + extra) + "\n")
    images, labels, _, val_idx = crop_split(data)
    np.savez(out / "gtsrb-val.npz", images=images[val_idx], labels=labels[val_idx])
    # Out-of-domain sets from the same held-out photos: close-ups, a smaller and a larger camera, foreign
    # type faces, yellow-faced signs.
    ood = ood_sets(images_dir, read_gt(Path(data["gtsdb_gt"])), val_names, out / "ood", int(data["seed"]))
    ood["other_signs"] = other_signs_gt(val_names, other_signs(data), out / "ood")
    # The same crops as other countries paint them: the classes with a yellow form, yellow-faced.
    yellow = np.nonzero(np.isin(labels[val_idx], list(clf_train.YELLOW_FACED)))[0]
    yellow_images = clf_train.yellow_faced(images[val_idx][yellow], labels[val_idx][yellow])
    np.savez(out / "ood" / "gtsrb-val-yellow.npz", images=yellow_images, labels=labels[val_idx][yellow])
    return {
        "photos": len(val_names),
        "signs": len(gt_lines),
        "other_signs": len(extra),
        "crops": int(len(val_idx)),
        "crops_yellow": int(len(yellow)),
        "dir": str(out),
        "ood": ood,
    }


# The localiser's stages, in this order (see training/detector.py); make train runs the first
# two, detector_refine only when --stages names it.
DETECTOR_STAGES = ("detector", "detector_scale", "detector_refine")
STAGES = (*DETECTOR_STAGES, "classifier", "sign_gate", "digits", "words", "register", "heldout", "ship")


def ship(cfg: dict[str, Any]) -> dict[str, list[str]]:
    """Copy the trained files from `output_dir` into the package folders `ship` names (the files
    the services load). A file training did not write is left as it is in the package, so a
    run of one stage ships that stage's files alone. Returns what changed and what did not,
    by sha256 of the contents."""
    import hashlib

    def digest(path: Path) -> str | None:
        return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None

    trained_dir = Path(cfg["output_dir"])
    report: dict[str, list[str]] = {"shipped": [], "unchanged": [], "not_trained": []}
    for folder, names in cfg["ship"].items():
        for name in names:
            source, target = trained_dir / name, Path(folder) / name
            if not source.is_file():
                report["not_trained"].append(str(source))
            elif digest(source) == digest(target):
                report["unchanged"].append(str(target))
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
                report["shipped"].append(str(target))
    return report


def train_detector_stage(
    cfg: dict[str, Any], stage: str, work: Path, out_dir: Path, resume: Path | None
) -> dict[str, Any]:
    """One localiser stage: its data set, ultralytics training, then detector.pt and its ONNX export.

    Each stage writes `detector.pt` into `out_dir`; a stage whose `start_weights` is
    `previous` starts from the one the stage before wrote (the shipped one when it runs
    alone), and draws its tiles and pictures
    with `seed_offset` added to the data seed (the photo split itself never changes).
    `resume` continues an interrupted run of this stage from its last.pt.
    """
    import mlflow

    data = cfg["data"]
    seed = int(data["seed"]) + int(cfg[stage].get("seed_offset", 0))
    train_names, val_names = photo_split(data)
    (work / "detector-val.txt").write_text("\n".join(val_names) + "\n")
    mlflow.log_text("\n".join(val_names), "splits/detector-val-photos.txt")
    det_cfg = dict(cfg[stage], seed=seed, name=stage)
    # Reviewed photos (data.reviews) join the training side only.
    gt = read_gt(Path(data["gtsdb_gt"]))
    if det_cfg.get("other_signs"):
        if not det_cfg["single_class"]:
            raise ValueError(f"{stage}.other_signs needs single_class: the other signs have none of the 43 classes")
        gt = with_other_signs(gt, other_signs(data))
    images_dir, gt, reviewed = reviews.photos(
        reviews.read_all(data.get("reviews") or []), Path(data["gtsdb_images"]), gt, work, bool(det_cfg["single_class"])
    )
    train_names = train_names + reviewed
    if det_cfg["start_weights"] == "previous":  # what the stage before wrote, else (run alone) the shipped one
        previous = out_dir / "detector.pt"
        det_cfg["start_weights"] = str(previous if previous.is_file() else shipped("roadsigns.detector", "detector.pt"))
    if resume is None:
        crops = None
        if det_cfg.get("pasted"):  # real GTSRB crops of training tracks, pasted among the drawn signs
            images, labels, train_idx, _ = crop_split(data)
            crops = (images[train_idx], labels[train_idx])
        data_yaml = det_train.prepare(images_dir, gt, train_names, val_names, det_cfg, work, seed, crops)
    else:  # the interrupted run's data set is still in place
        data_yaml = work / f"{stage}-data" / "data.yaml"
        mlflow.log_param(f"{stage}.resumed_from", str(resume))
    t0 = time.perf_counter()
    best, results_csv = det_train.train(data_yaml, det_cfg, work, resume=resume)
    mlflow.log_metric(f"{stage}/train_seconds", time.perf_counter() - t0)
    log_epochs(results_csv, stage)
    shutil.copyfile(best, out_dir / "detector.pt")
    export_detector(out_dir / "detector.pt", out_dir / "detector.onnx")
    # One artifact folder whichever stage ran last: it is what `register` registers.
    mlflow.log_artifact(str(out_dir / "detector.pt"), "detector")
    mlflow.log_artifact(str(out_dir / "detector.onnx"), "detector")
    return {"weights": str(out_dir / "detector.pt"), "results": str(results_csv)}


def run(cfg: dict[str, Any], stages: set[str], alias: str, resume_detector: Path | None = None) -> dict[str, Any]:
    import mlflow

    data = cfg["data"]
    seed = int(data["seed"])
    work = Path(cfg["work_dir"])
    work.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {}
    out_dir = Path(cfg["output_dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    if "heldout" in stages:  # the evaluation set; trains nothing
        summary["heldout"] = write_heldout(data, work / "heldout")
    if stages <= {"heldout", "ship"}:
        if "ship" in stages:  # the trained files into the packages; trains nothing
            summary["ship"] = ship(cfg)
        return summary
    mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(work / 'mlflow.db').resolve()}")
    mlflow.set_experiment(os.environ.get("ROADSIGNS_MLFLOW_EXPERIMENT", "roadsigns-training"))
    with mlflow.start_run() as active:
        summary["run_id"] = active.info.run_id
        mlflow.log_params({k: v for k, v in _flatten(cfg).items() if len(str(v)) < 500})
        mlflow.log_param("stages", ",".join(sorted(stages)))
        reviews.log_inputs(reviews.read_all(data.get("reviews") or []))

        for stage in DETECTOR_STAGES:
            if stage in stages:
                summary[stage] = train_detector_stage(cfg, stage, work, out_dir, resume_detector)

        if "classifier" in stages:
            import torch

            from roadsigns.training.readers import speed_limit_signs

            images, labels, train_idx, val_idx = crop_split(data)
            np.save(work / "classifier-val-idx.npy", val_idx)
            # Rendered speed-limit signs join the training side only.
            extra_x, extra_y = speed_limit_signs(int(cfg["classifier"].get("synthetic_speed_limits", 0)), seed)
            # So do the crops of reviewed signs (data.reviews).
            review_x, review_y = reviews.crops(reviews.read_all(data.get("reviews") or []))
            extra_x, extra_y = np.concatenate([extra_x, review_x]), np.concatenate([extra_y, review_y])
            train_idx = np.concatenate([train_idx, len(images) + np.arange(len(extra_x))])
            images, labels = np.concatenate([images, extra_x]), np.concatenate([labels, extra_y])

            def on_clf_epoch(member: int, epoch: int, metrics: dict[str, float]) -> None:
                mlflow.log_metrics({f"classifier/member{member}/{k}": v for k, v in metrics.items()}, step=epoch)

            t0 = time.perf_counter()
            model, member_accs, ensemble_acc = clf_train.train_ensemble(
                images, labels, train_idx, val_idx, cfg["classifier"], on_epoch=on_clf_epoch
            )
            mlflow.log_metric("classifier/train_seconds", time.perf_counter() - t0)
            mlflow.log_metric("classifier/val_accuracy", ensemble_acc)
            torch.save(model.state_dict(), out_dir / "classifier.pt")
            export_classifier(out_dir / "classifier.pt", out_dir / "classifier.onnx")
            mlflow.log_artifact(str(out_dir / "classifier.pt"), "classifier")
            mlflow.log_artifact(str(out_dir / "classifier.onnx"), "classifier")
            summary["classifier"] = str(out_dir / "classifier.pt")
            summary["classifier_val_accuracy"] = ensemble_acc
            summary["classifier_member_val_accuracy"] = member_accs

        if "sign_gate" in stages:
            summary["sign_gate"] = train_sign_gate(cfg, out_dir)

        for reader in ("digits", "words"):
            if reader in stages:
                summary[reader] = train_reader(cfg, reader, seed)

        if "register" in stages:
            summary["registered"] = register(active.info.run_id, cfg["registry_names"], stages, alias)
        mlflow.log_dict(summary, "summary.json")
    return summary


def train_sign_gate(cfg: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """The classifier's sign gate (training/sign_gate.py), fitted on the localiser's proposals in the
    training photos, written into classifier.pt and its ONNX export.

    It reads the classifier and localiser this run wrote (`output_dir`), else the shipped ones,
    so `--stages sign_gate` alone gates the shipped classifier. Its labels are GTSDB's boxes and
    the other signs' list (`data.other_signs`): a proposal on a parking sign is a sign."""
    import mlflow
    import torch

    from roadsigns.detector.model import SignDetector
    from roadsigns.training import sign_gate

    data = cfg["data"]

    def trained_or_shipped(name: str) -> Path:
        return out_dir / name if (out_dir / name).is_file() else shipped("roadsigns.detector", name)

    detector = SignDetector(
        trained_or_shipped("detector.onnx"), shipped("roadsigns.detector", "classifier.onnx"), backend="onnx"
    )
    train_names, _ = photo_split(data)
    boxes = with_other_signs(read_gt(Path(data["gtsdb_gt"])), other_signs(data))
    t0 = time.perf_counter()
    model, figures = sign_gate.train(
        trained_or_shipped("classifier.pt"), detector, Path(data["gtsdb_images"]), train_names, boxes, cfg["sign_gate"]
    )
    mlflow.log_metric("sign_gate/train_seconds", time.perf_counter() - t0)
    mlflow.log_metrics({f"sign_gate/{k}": v for k, v in figures.items()})
    torch.save(model.state_dict(), out_dir / "classifier.pt")
    export_classifier(out_dir / "classifier.pt", out_dir / "classifier.onnx")
    mlflow.log_artifact(str(out_dir / "classifier.pt"), "classifier")
    mlflow.log_artifact(str(out_dir / "classifier.onnx"), "classifier")
    return figures


def train_reader(cfg: dict[str, Any], name: str, seed: int) -> dict[str, Any]:
    """A learned text reader (`digits` or `words`), on real GTSRB crops of training tracks plus rendered signs.

    The signs are drawn in the stage's `faces` (training/faces.py: `base`, `wide` or a list of file names).

    Judged on the held-out tracks' real crops (text the data set has) and on rendered signs
    drawn with another seed, so that text GTSRB lacks ("90", "HALT") is checked as well.
    """
    import mlflow

    from roadsigns.training import readers

    script = {readers.NUMBERS.name: readers.NUMBERS, readers.WORDS.name: readers.WORDS}[name]
    rcfg = cfg[name]
    images, labels, train_idx, val_idx = crop_split(cfg["data"])
    faces = resolve_faces(rcfg.get("faces"))
    mlflow.log_text("\n".join(faces.names()), f"{name}/faces.txt")
    real_x, real_y = readers.real(script, images, labels, train_idx)
    # A share of the speed limits with the yellow face other countries give them (`yellow_faces`):
    # that share of the real crops painted so (classifier.yellow_faced), of the rendered ones drawn so.
    yellow = float(rcfg.get("yellow_faces", 0.0))
    if yellow:
        shades = np.random.default_rng(seed)
        painted = shades.random(len(real_x)) < yellow
        real_x = real_x.copy()
        real_x[painted] = clf_train.yellow_faced(real_x[painted], rng=shades)  # speed limits all
    synth_x, synth_y = readers.synthetic(script, int(rcfg["synthetic"]), seed, faces, yellow)
    val_x, val_y = readers.real(script, images, labels, val_idx)
    other_x, other_y = readers.synthetic(script, 2000, seed + 1, faces)  # another seed: signs training never saw
    # Real crops are few beside the rendered ones (STOP: a few hundred): show them `real_repeat` times.
    repeat = int(rcfg.get("real_repeat", 1))
    x = np.concatenate([*[real_x] * repeat, synth_x])
    y = np.concatenate([*[real_y] * repeat, synth_y])
    mlflow.log_params({f"{name}.real_train": len(real_x), f"{name}.real_val": len(val_x)})

    def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
        mlflow.log_metrics({f"{name}/{k}": v for k, v in metrics.items()}, step=epoch)

    t0 = time.perf_counter()
    model, best = readers.train(
        script, x, y, (np.concatenate([val_x, other_x]), np.concatenate([val_y, other_y])), rcfg, seed, on_epoch
    )
    mlflow.log_metric(f"{name}/train_seconds", time.perf_counter() - t0)
    report = {}
    for part, (vx, vy) in {"real_heldout": (val_x, val_y), "rendered_other": (other_x, other_y)}.items():
        report[part] = readers.exact_rate(model, vx, vy)
        mlflow.log_metric(f"{name}/exact_{part}", report[part])
    out = Path(rcfg["output"])
    out.parent.mkdir(parents=True, exist_ok=True)
    readers.export(model, out)
    mlflow.log_artifact(str(out), name)
    return {"weights": str(out), "best_val_exact": best, **report}


def register(run_id: str, names: dict[str, str], stages: set[str], alias: str) -> dict[str, str]:
    """Register each model file logged by this run and point `alias` at the new version."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    run = client.get_run(run_id)
    versions = {}
    trained = ({"classifier"} if stages & {"classifier", "sign_gate"} else set()) | (
        {"detector"} if stages & set(DETECTOR_STAGES) else set()
    )
    for part in ("detector", "classifier"):
        if part not in trained:
            continue
        try:
            client.create_registered_model(names[part])
        except MlflowException:
            pass  # already registered by an earlier run
        # The files are plain weights, not an MLflow "flavor": register the artifact folder itself.
        mv = client.create_model_version(names[part], f"{run.info.artifact_uri}/{part}", run_id=run_id)
        client.set_registered_model_alias(names[part], alias, mv.version)
        versions[part] = f"{names[part]}/{mv.version}"
    return versions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="roadsigns-train", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("training/config.yaml"))
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a config value, e.g. --set detector.epochs=2",
    )
    parser.add_argument(
        "--stages",
        default="detector,detector_scale,classifier,sign_gate,digits,words,register",
        help=f"comma-separated subset of {','.join(STAGES)} "
        "(heldout alone writes the evaluation set into WORK_DIR/heldout and trains nothing; ship alone "
        "copies the trained files from OUTPUT_DIR into the packages)",
    )
    parser.add_argument("--alias", default="candidate", help="registry alias given to the new versions")
    parser.add_argument(
        "--resume-detector",
        type=Path,
        metavar="LAST_PT",
        help="continue an interrupted localiser run (the one stage in --stages) from its last.pt",
    )
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, args.set)
    except (OSError, KeyError, yaml.YAMLError) as exc:
        print(f"roadsigns-train: bad config: {exc}", file=sys.stderr)
        return 2
    stages = set(args.stages.split(","))
    if stages - set(STAGES):
        print(f"roadsigns-train: unknown stage(s) {sorted(stages - set(STAGES))}; known: {STAGES}", file=sys.stderr)
        return 2
    if "ship" in stages and stages - {"heldout", "ship"}:
        print("roadsigns-train: ship runs on its own (make ship), after the training run it ships", file=sys.stderr)
        return 2
    try:  # a reader's type faces must all be installed before any stage starts
        for reader in sorted({"digits", "words"} & stages):
            resolve_faces(cfg[reader].get("faces"))
    except (FileNotFoundError, ValueError) as exc:
        print(f"roadsigns-train: {exc}", file=sys.stderr)
        return 2
    summary = run(cfg, stages, args.alias, args.resume_detector)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
