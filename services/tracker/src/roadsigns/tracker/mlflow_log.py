"""Log window summaries to MLflow: one run per window and model version in the jobs experiment.

Idempotent: a run carries its window (`roadsigns.window`) and model versions
(`roadsigns.models`) as tags, and a window is logged only where no finished run names both.
A run left unfinished (its process died mid-way) is deleted and logged again. Two ticks
never log at once: the beat task holds a Redis lock around `log_windows`.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime

from sqlalchemy import Engine

from roadsigns.tracker.aggregates import Summary, Window, closed_windows, summarise

log = logging.getLogger(__name__)

WINDOW_TAG = "roadsigns.window"
WINDOW_S_TAG = "roadsigns.window_s"
MODELS_TAG = "roadsigns.models"
RUNS_TAG = "roadsigns.window_runs"


class WindowLogger:
    def __init__(self, tracking_uri: str, experiment: str) -> None:
        # Fail fast and let the next tick retry, instead of urllib3 retrying for minutes.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        from mlflow import MlflowClient

        self.client = MlflowClient(tracking_uri)
        self.experiment = experiment
        self._experiment_id: str | None = None

    def experiment_id(self) -> str:
        if self._experiment_id is None:
            found = self.client.get_experiment_by_name(self.experiment)
            self._experiment_id = found.experiment_id if found else self.client.create_experiment(self.experiment)
        return self._experiment_id

    def logged(self, windows: list[Window]) -> dict[str, tuple[set[str], bool]]:
        """What is logged of these windows: window tag → (the models with a finished run, whether
        that is all of them).

        A run starts at its window's start, so one search finds them all. Each run names how
        many runs its window has (`roadsigns.window_runs`). A run left unfinished (its process
        died mid-way) is deleted here, to be logged again.
        """
        if not windows:
            return {}
        oldest_ms = int(windows[0].start.timestamp() * 1000)
        runs = self.client.search_runs(
            [self.experiment_id()],
            filter_string=f"tags.`{WINDOW_S_TAG}` = '{windows[0].seconds}' AND attributes.start_time >= {oldest_ms}",
            max_results=5000,
        )
        finished: dict[str, set[str]] = {}
        expected: dict[str, int] = {}
        for run in runs:
            tags = run.data.tags
            if WINDOW_TAG not in tags or MODELS_TAG not in tags:
                continue
            if run.info.status != "FINISHED":
                self.client.delete_run(run.info.run_id)
                continue
            finished.setdefault(tags[WINDOW_TAG], set()).add(tags[MODELS_TAG])
            expected[tags[WINDOW_TAG]] = int(tags.get(RUNS_TAG, "1"))
        return {tag: (models, len(models) >= expected[tag]) for tag, models in finished.items()}

    def log(self, summary: Summary, window_runs: int) -> str:
        from mlflow.entities import Metric, Param, RunTag

        window = summary.window
        start_ms, end_ms = int(window.start.timestamp() * 1000), int(window.end.timestamp() * 1000)
        name = f"{window.start:%Y-%m-%d %H:%M}Z ({window.seconds} s)"
        run = self.client.create_run(
            self.experiment_id(),
            start_time=start_ms,
            run_name=name if summary.model_versions else f"{name}, failed before a model answered",
            tags={
                WINDOW_TAG: window.tag,
                WINDOW_S_TAG: str(window.seconds),
                MODELS_TAG: summary.models,
                RUNS_TAG: str(window_runs),
            },
        )
        run_id: str = run.info.run_id
        self.client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), end_ms, 0) for k, v in summary.metrics().items()],
            params=[Param(f"model.{k}", str(v)) for k, v in sorted(summary.model_versions.items())],
            tags=[RunTag("roadsigns.window_start", window.start.isoformat())],
        )
        self.client.log_dict(run_id, summary.report(), "summary.json")
        sample = {"window": window.tag, "models": summary.model_versions, "signs": summary.low_confidence}
        self.client.log_dict(run_id, sample, "low_confidence.json")
        self.client.set_terminated(run_id, end_time=end_ms)  # last: a FINISHED run is a complete one
        return run_id


def log_windows(
    engine: Engine, logger: WindowLogger, window_s: int, now: datetime, lookback: int = 12
) -> list[Summary]:
    """Log every closed window of the last `lookback` that has finished jobs and is not yet
    logged whole, one run per model version; return what was logged. A window logged whole
    costs no read of Postgres; one without jobs logs nothing and is read again on the next
    tick (a read of the `finished_at` index, migration 0007, that finds nothing)."""
    windows = closed_windows(now, window_s, lookback)
    before = logger.logged(windows)
    logged = []
    for window in windows:
        models, complete = before.get(window.tag, (set(), False))
        if complete:
            continue
        summaries = summarise(engine, window)
        for summary in summaries:
            if summary.models in models:
                continue
            logger.log(summary, len(summaries))
            logged.append(summary)
    return logged
