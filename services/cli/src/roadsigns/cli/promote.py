"""`roadsigns promote`: move a registry alias to a candidate's versions only if the candidate is no
worse on a fixed evaluation set.

Both pairs (detector + classifier) run the evaluation `roadsigns evaluate` runs, on the same
photos, in this process: the candidate alias's versions and the ones the target alias names now
(the shipped files when the target alias does not exist yet). A headline metric that drops by
more than the tolerance refuses the move; `--force` moves it anyway. Either way one MLflow run
(experiment `roadsigns-promotions`) holds both metric sets, the versions, the decision and
`forced`. Workers serving the alias pick the new versions up themselves (`ROADSIGNS_MODEL_POLL_S`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from roadsigns.cli.groundtruth import read_gt
from roadsigns.cli.metrics import detection_report
from roadsigns.detector.model import SignDetector
from roadsigns.shared.settings import Settings

# What a promotion may not make worse: class-aware mAP50 on the photos, the classifier's accuracy
# on the crops (when an npz is given) and the share of text-bearing signs read exactly.
HEADLINE = ("map50", "accuracy", "ocr_exact")
EXPERIMENT = "roadsigns-promotions"
HELDOUT = Path(".train/heldout")  # what `make heldout` writes


@dataclass(frozen=True)
class EvalSet:
    images: Path
    gt: Path
    npz: Path | None = None

    def sha256(self) -> str:
        """One hash over the labels and every photo: the same set, the same hash, so runs compare."""
        from roadsigns.cli.evaluation import photo_names

        h = hashlib.sha256(self.gt.read_bytes())
        for name in photo_names(self.images):
            h.update(name.encode() + (self.images / name).read_bytes())
        if self.npz:
            h.update(self.npz.read_bytes())
        return h.hexdigest()

    def as_json(self) -> dict[str, str | None]:
        return {"images": str(self.images), "gt": str(self.gt), "npz": str(self.npz) if self.npz else None}


def heldout(root: Path = HELDOUT) -> EvalSet:
    """The held-out split `make heldout` writes: photos + gt.txt, and GTSRB's held-out crops."""
    npz = root / "gtsrb-val.npz"
    return EvalSet(root / "images", root / "gt.txt", npz if npz.exists() else None)


def evaluate(detector: SignDetector, settings: Settings, evalset: EvalSet, quiet: bool = True) -> dict[str, float]:
    """`roadsigns evaluate`'s detection report (OCR included) on the set's photos, and the classifier's
    accuracy on its crops: the headline metrics, and a few more a person reading the decision wants."""
    from roadsigns.cli.evaluation import classify_crops, photo_names, predict_photos
    from roadsigns.cli.pipeline import Pipeline

    pipeline = Pipeline(settings, ocr=True, detector=detector)
    preds, _ = predict_photos(pipeline, evalset.images, photo_names(evalset.images), quiet)
    report = detection_report(read_gt(evalset.gt), preds, settings.min_confidence)
    metrics = {k: float(report[k]) for k in ("map50", "map50_any", "precision", "recall", "ocr_exact")}
    if evalset.npz:
        with np.load(evalset.npz) as z:
            images, labels = z["images"], z["labels"]
        predicted, _ = classify_crops(detector, images)
        metrics["accuracy"] = float((predicted == labels.astype(np.int64)).mean())
    return metrics


def drops(current: dict[str, float], candidate: dict[str, float], tolerance: float) -> tuple[dict, list[str]]:
    """How much each headline metric fell (negative: rose), and a reason per fall beyond the tolerance.

    A metric the set cannot measure (no text-bearing sign: ocr_exact is NaN) or that only one side
    has is not compared."""
    fell, reasons = {}, []
    for name in HEADLINE:
        a, b = current.get(name), candidate.get(name)
        if a is None or b is None or math.isnan(a) or math.isnan(b):
            continue
        fell[name] = a - b
        if a - b > tolerance:
            reasons.append(f"{name} fell from {a:.4f} to {b:.4f} (by {a - b:.4f}, tolerance {tolerance:g})")
    return fell, reasons


@dataclass
class Side:
    """One pair of models under evaluation: its registry versions (None: the shipped files) and label."""

    label: str
    versions: dict[str, str] | None

    def build(self, settings: Settings, tracking_uri: str) -> SignDetector:
        from roadsigns.detector.service import build_detector

        if self.versions is None:
            return build_detector(settings.model_copy(update={"model_registry_alias": None}))
        pinned = settings.model_copy(update={"model_registry_alias": self.label, "mlflow_tracking_uri": tracking_uri})
        return build_detector(pinned, self.versions)


def alias_versions(client: Any, alias: str) -> dict[str, str]:
    """part -> version for the parts `alias` names (a training run that trained only one registers one)."""
    from mlflow.exceptions import MlflowException

    from roadsigns.detector.registry import MODELS

    found = {}
    for part, name in MODELS.items():
        try:
            found[part] = str(client.get_model_version_by_alias(name, alias).version)
        except MlflowException:
            continue
    return found


def promote(
    settings: Settings,
    tracking_uri: str,
    alias: str,
    candidate: str,
    evalset: EvalSet,
    tolerance: float,
    force: bool,
    quiet: bool = True,
) -> dict[str, Any]:
    """Evaluate, decide, log the run, move the alias if promoted; the decision as JSON-able dict.

    `decision` is `promoted`, `refused` or `unchanged` (the alias already names the candidate's
    versions: nothing evaluated, nothing logged)."""
    import mlflow
    from mlflow import MlflowClient

    from roadsigns.detector.registry import MODELS

    client = MlflowClient(tracking_uri)
    current_versions = alias_versions(client, alias)
    proposed = alias_versions(client, candidate)
    if not proposed:
        raise LookupError(f"alias {candidate!r} names no version of {' or '.join(MODELS.values())}")
    if current_versions and set(current_versions) != set(MODELS):
        raise LookupError(f"alias {alias!r} names only the {', '.join(current_versions)}: point it at both models")
    # A candidate of one part (a run that trained only the classifier) is paired with the serving other part.
    candidate_versions = {**current_versions, **proposed}
    if set(candidate_versions) != set(MODELS):
        raise LookupError(f"alias {candidate!r} names only the {', '.join(proposed)} and {alias!r} does not exist")
    result: dict[str, Any] = {
        "alias": alias,
        "candidate": candidate,
        "versions": {"current": current_versions or None, "candidate": candidate_versions},
        "evaluation_set": {**evalset.as_json(), "sha256": evalset.sha256()},
        "tolerance": tolerance,
        "forced": force,
    }
    if candidate_versions == current_versions:
        return {**result, "decision": "unchanged", "reasons": [f"{alias!r} already names these versions"]}

    sides = {"current": Side(alias, current_versions or None), "candidate": Side(candidate, candidate_versions)}
    metrics: dict[str, dict[str, float]] = {}
    reasons: list[str] = []
    seconds: dict[str, float] = {}
    for name, side in sides.items():
        t0 = time.perf_counter()
        try:
            detector = side.build(settings, tracking_uri)
        except Exception as exc:  # noqa: BLE001 - a model that does not load is a refusal, not a crash
            # A broken current pair leaves nothing to compare against: refused too (--force moves it).
            who = "the candidate" if name == "candidate" else f"the pair {alias!r} names now"
            reasons.append(f"{who} does not load: {type(exc).__name__}: {str(exc)[:300]}")
            continue
        metrics[name] = evaluate(detector, settings, evalset, quiet)
        seconds[name] = time.perf_counter() - t0
        del detector
    fell: dict[str, float] = {}
    if "current" in metrics and "candidate" in metrics:
        fell, more = drops(metrics["current"], metrics["candidate"], tolerance)
        reasons += more
    decision = "promoted" if force or not reasons else "refused"
    result.update(decision=decision, reasons=reasons, metrics=metrics, drops=fell, seconds=seconds)

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(EXPERIMENT)
    # MLflow prints the run's link on stdout, which is the decision's JSON: send it to stderr.
    with (
        contextlib.redirect_stdout(sys.stderr),
        mlflow.start_run(run_name=f"promote {candidate} -> {alias}: {decision}") as run,
    ):
        mlflow.log_params(
            {
                "alias": alias,
                "candidate": candidate,
                "tolerance": tolerance,
                "forced": force,
                **{f"current.{p}": v for p, v in current_versions.items()},
                **{f"candidate.{p}": v for p, v in candidate_versions.items()},
                "evaluation_set.sha256": result["evaluation_set"]["sha256"],
            }
        )
        mlflow.log_metrics(
            {f"{side}.{k}": v for side, values in metrics.items() for k, v in values.items() if not math.isnan(v)}
        )
        mlflow.set_tags({"roadsigns.decision": decision, "roadsigns.forced": str(force).lower()})
        result["mlflow_run_id"] = run.info.run_id
        if decision == "promoted":
            for part, version in candidate_versions.items():
                client.set_registered_model_alias(MODELS[part], alias, version)
        mlflow.log_text(json.dumps(result, indent=2, default=str), "decision.json")
    return result
