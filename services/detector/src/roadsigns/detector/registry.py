"""Resolve model files from the MLflow Model Registry by alias (`models:/NAME@ALIAS`)."""

from __future__ import annotations

from pathlib import Path

DETECTOR_MODEL = "roadsigns-detector"
CLASSIFIER_MODEL = "roadsigns-classifier"


def fetch(tracking_uri: str, alias: str, ext: str = "pt") -> tuple[Path, Path, dict[str, str]]:
    """Download both models' files for `alias`; return their paths and `name/version` strings."""
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient()
    paths, versions = {}, {}
    for part, name, filename in (
        ("detector", DETECTOR_MODEL, f"detector.{ext}"),
        ("classifier", CLASSIFIER_MODEL, f"classifier.{ext}"),
    ):
        mv = client.get_model_version_by_alias(name, alias)
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=mv.source))
        paths[part] = local / filename if local.is_dir() else local
        versions[part] = f"{name}/{mv.version}@{alias}"
    return paths["detector"], paths["classifier"], versions
