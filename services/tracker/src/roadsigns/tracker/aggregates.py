"""What a model owner reads in MLflow: the jobs that finished in a time window, summed up per model version.

Per-job records stay in Postgres; MLflow gets one run per window and model version
(`mlflow_log.WindowLogger`). Windows are aligned to the clock (multiples of
ROADSIGNS_MLFLOW_WINDOW_S since the epoch), so every tracker process and every redelivery
of the beat task names the same windows, and a window's run can be looked up before it is
logged again.
"""

from __future__ import annotations

import heapq
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, select

from roadsigns.shared.db.models import Job, Sign
from roadsigns.shared.db.session import session_scope
from roadsigns.shared.schemas import JobStatus

# A job's finished_at is stamped before its transaction commits; a window is read this long
# after it closed (or one window length, if shorter), so a result that commits late is still in it.
SETTLE_S = 30.0
QUANTILES = (0.5, 0.95, 0.99)  # of every stage timing
CONFIDENCE_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
HISTOGRAM_BINS = 10  # confidence histogram, equal bins over [0, 1]
LOW_CONFIDENCE_SAMPLE = 20  # the least confident signs of a window, kept as an artifact
NO_MODEL = "none"  # jobs that failed before any model answered carry no versions


@dataclass(frozen=True)
class Window:
    start: datetime
    seconds: int

    @property
    def end(self) -> datetime:
        return datetime.fromtimestamp(self.start.timestamp() + self.seconds, UTC)

    @property
    def tag(self) -> str:
        """The window's name in MLflow: "2026-11-30T08:15:00Z/300"."""
        return f"{self.start:%Y-%m-%dT%H:%M:%SZ}/{self.seconds}"


def closed_windows(now: datetime, seconds: int, lookback: int) -> list[Window]:
    """The last `lookback` windows that closed at least the settle time before `now`, oldest first."""
    settle = min(SETTLE_S, seconds)
    last_end = math.floor((now.timestamp() - settle) / seconds) * seconds
    return [Window(datetime.fromtimestamp(last_end - k * seconds, UTC), seconds) for k in range(lookback, 0, -1)]


def models_key(model_versions: dict[str, Any] | None) -> str:
    """One string per combination of model versions: "classifier=…;detector=…;ocr=…"."""
    if not model_versions:
        return NO_MODEL
    return ";".join(f"{k}={v}" for k, v in sorted(model_versions.items()))


@dataclass
class Summary:
    """One model version's jobs in one window."""

    window: Window
    models: str
    model_versions: dict[str, str] = field(default_factory=dict)
    jobs_done: int = 0
    jobs_failed: int = 0
    timings: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    confidences: list[float] = field(default_factory=list)
    open_set: int = 0
    by_source: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    low_confidence: list[dict[str, Any]] = field(default_factory=list)

    @property
    def signs(self) -> int:
        return len(self.confidences)

    def metrics(self) -> dict[str, float]:
        jobs = self.jobs_done + self.jobs_failed
        out = {
            "jobs": float(jobs),
            "jobs_done": float(self.jobs_done),
            "jobs_failed": float(self.jobs_failed),
            "failed_share": self.jobs_failed / jobs if jobs else 0.0,
            "signs": float(self.signs),
            "signs_per_job": self.signs / self.jobs_done if self.jobs_done else 0.0,
            "open_set_share": self.open_set / self.signs if self.signs else 0.0,
        }
        for key, values in sorted(self.timings.items()):
            for q, value in zip(QUANTILES, quantiles(values, QUANTILES), strict=True):
                out[f"{key}_p{round(q * 100)}"] = value
        if self.confidences:
            out["confidence_mean"] = sum(self.confidences) / self.signs
            for q, value in zip(CONFIDENCE_QUANTILES, quantiles(self.confidences, CONFIDENCE_QUANTILES), strict=True):
                out[f"confidence_p{round(q * 100):02d}"] = value
        return out

    def histogram(self) -> list[int]:
        counts = [0] * HISTOGRAM_BINS
        for c in self.confidences:
            counts[min(HISTOGRAM_BINS - 1, max(0, int(c * HISTOGRAM_BINS)))] += 1
        return counts

    def report(self) -> dict[str, Any]:
        """Everything, as the JSON artifact `summary.json`."""
        return {
            "window": {"start": self.window.start.isoformat(), "seconds": self.window.seconds},
            "model_versions": self.model_versions,
            "metrics": self.metrics(),
            "confidence_histogram": {"bins": HISTOGRAM_BINS, "counts": self.histogram()},
            "signs_by_source": dict(sorted(self.by_source.items())),
        }


def quantiles(values: Sequence[float], qs: Iterable[float]) -> list[float]:
    """Nearest-rank quantiles: each one a value that occurred."""
    ordered = sorted(values)
    n = len(ordered)
    return [ordered[min(n - 1, max(0, math.ceil(q * n) - 1))] for q in qs]


def summarise(engine: Engine, window: Window) -> list[Summary]:
    """The jobs that finished (done or failed) in the window, one summary per model version,
    from two reads: the jobs, and the done jobs' signs."""
    finished = [JobStatus.DONE.value, JobStatus.FAILED.value]
    in_window = (Job.finished_at >= window.start, Job.finished_at < window.end, Job.status.in_(finished))
    groups: dict[str, Summary] = {}
    job_models: dict[str, str] = {}
    with session_scope(engine) as s:
        for job_id, status, timings, versions in s.execute(
            select(Job.id, Job.status, Job.timings_ms, Job.model_versions).where(*in_window)
        ):
            key = models_key(versions)
            group = groups.get(key) or groups.setdefault(key, Summary(window, key, dict(versions or {})))
            job_models[job_id] = key
            if status == JobStatus.FAILED.value:
                group.jobs_failed += 1
                continue
            group.jobs_done += 1
            for name, value in (timings or {}).items():
                if isinstance(value, int | float):
                    group.timings[name].append(float(value))
        signs = s.execute(
            select(
                Sign.job_id,
                Sign.index,
                Sign.class_id,
                Sign.class_name,
                Sign.class_source,
                Sign.confidence,
                Sign.text,
                Sign.text_confidence,
            )
            .join(Job, Job.id == Sign.job_id)
            .where(*in_window, Job.status == JobStatus.DONE.value)
        ).all()
    lowest: dict[str, list[Any]] = defaultdict(list)
    for sign in signs:
        models = job_models.get(sign.job_id)
        if models is None:  # the job finished after the first read; it is in the next window's figures
            continue
        group = groups[models]
        group.confidences.append(sign.confidence)
        group.by_source[sign.class_source] += 1
        group.open_set += sign.class_id is None
        lowest[models].append(sign)
    for key, rows in lowest.items():
        groups[key].low_confidence = [
            {
                "job_id": r.job_id,
                "index": r.index,
                "class_id": r.class_id,
                "class_name": r.class_name,
                "class_source": r.class_source,
                "confidence": round(r.confidence, 4),
                "text": r.text,
                "text_confidence": round(r.text_confidence, 1),
            }
            for r in heapq.nsmallest(LOW_CONFIDENCE_SAMPLE, rows, key=lambda r: (r.confidence, r.job_id, r.index))
        ]
    return [groups[k] for k in sorted(groups)]
