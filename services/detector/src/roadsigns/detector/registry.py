"""Resolve model files from the MLflow Model Registry by alias (`models:/NAME@ALIAS`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

DETECTOR_MODEL = "roadsigns-detector"
CLASSIFIER_MODEL = "roadsigns-classifier"
MODELS = {"detector": DETECTOR_MODEL, "classifier": CLASSIFIER_MODEL}  # part -> registered model name


def resolve(tracking_uri: str, alias: str) -> dict[str, str]:
    """The version numbers `alias` names now, per part: `{"detector": "3", "classifier": "2"}`.

    One registry call per model and no download: cheap enough for a worker to poll.
    """
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    return {part: str(client.get_model_version_by_alias(name, alias).version) for part, name in MODELS.items()}


def fetch(
    tracking_uri: str, alias: str, ext: str = "pt", versions: Mapping[str, str] | None = None
) -> tuple[Path, Path, dict[str, str]]:
    """Download both models' files for `alias`; return their paths and `name/version@alias` strings.

    `versions` (part -> version number, as `resolve` gives them) pins the versions to download,
    so a caller that looked the alias up once loads what it saw, even if the alias moved since.
    """
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient()
    paths, labels = {}, {}
    for part, name in MODELS.items():
        if versions is not None:
            mv = client.get_model_version(name, versions[part])
        else:
            mv = client.get_model_version_by_alias(name, alias)
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=mv.source))
        paths[part] = local / f"{part}.{ext}" if local.is_dir() else local
        labels[part] = f"{name}/{mv.version}@{alias}"
    return paths["detector"], paths["classifier"], labels
