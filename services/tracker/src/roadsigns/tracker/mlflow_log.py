"""Log each finished job's figures to MLflow: one run per job in the jobs experiment."""

from __future__ import annotations

import logging
import os
import time

from roadsigns.tracker.service import Finished

log = logging.getLogger(__name__)


class JobLogger:
    def __init__(self, tracking_uri: str, experiment: str) -> None:
        # Fail fast and let the Celery task retry, instead of urllib3 retrying for minutes.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        from mlflow import MlflowClient

        self.client = MlflowClient(tracking_uri)
        self.experiment = experiment
        self._experiment_id: str | None = None

    def _experiment_id_or_create(self) -> str:
        if self._experiment_id is None:
            found = self.client.get_experiment_by_name(self.experiment)
            self._experiment_id = found.experiment_id if found else self.client.create_experiment(self.experiment)
        return self._experiment_id

    def log(self, job: Finished) -> str:
        from mlflow.entities import Metric, Param

        run = self.client.create_run(
            self._experiment_id_or_create(), run_name=job.job_id, tags={"roadsigns.job_id": job.job_id}
        )
        ts = int(time.time() * 1000)
        metrics = [Metric(k, float(v), ts, 0) for k, v in job.timings_ms.items()]
        metrics += [Metric("signs", float(job.n_signs), ts, 0), Metric("mean_confidence", job.mean_confidence, ts, 0)]
        params = [Param(f"model.{k}", v) for k, v in job.model_versions.items()]
        self.client.log_batch(run.info.run_id, metrics=metrics, params=params)
        self.client.set_terminated(run.info.run_id)
        return run.info.run_id
