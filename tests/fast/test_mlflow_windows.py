"""MLflow gets aggregates per window and model version, from Postgres, exactly once: real Postgres, a real
MLflow store (SQLite, in process), the tracker's functions called directly."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from mlflow import MlflowClient
from sqlalchemy import Engine, text

from roadsigns.shared.db.models import Job, Sign
from roadsigns.shared.db.session import session_scope
from roadsigns.tracker import aggregates
from roadsigns.tracker.aggregates import Window, closed_windows
from roadsigns.tracker.mlflow_log import MODELS_TAG, WINDOW_TAG, WindowLogger, log_windows

WINDOW_S = 300
START = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)  # a window boundary
AFTER = START + timedelta(seconds=WINDOW_S + aggregates.SETTLE_S + 1)  # the window closed and settled
OLD = {"detector": "detector.onnx@sha256:aaaaaaaaaaaa", "classifier": "c@sha256:bbbbbbbbbbbb", "ocr": "o@1"}
NEW = {**OLD, "detector": "detector.onnx@sha256:cccccccccccc"}


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One SQLite store for the module: creating one costs seconds (MLflow migrates its schema)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db"


@pytest.fixture()
def logger(mlflow_store: str, tmp_path: Path) -> Iterator[WindowLogger]:
    """An experiment of the test's own in the module's store."""
    name = f"roadsigns-jobs-{uuid.uuid4().hex[:8]}"
    MlflowClient(mlflow_store).create_experiment(name, artifact_location=(tmp_path / "artifacts").as_uri())
    yield WindowLogger(mlflow_store, name)


def add_job(
    engine: Engine,
    finished: datetime,
    versions: dict[str, str] | None,
    confidences: Sequence[float] = (),
    total_ms: float = 100.0,
    failed: bool = False,
    open_set: int = 0,
) -> str:
    job_id = uuid.uuid4().hex
    with session_scope(engine) as s:
        s.add(
            Job(
                id=job_id,
                status="failed" if failed else "done",
                blob_key=f"uploads/{job_id}.jpg",
                finished_at=finished,
                model_versions=versions,
                timings_ms=None if failed else {"detect_ms": total_ms / 2, "total_ms": total_ms},
                error="detector: boom" if failed else None,
            )
        )
        for i, c in enumerate(confidences):
            s.add(
                Sign(
                    job_id=job_id,
                    index=i,
                    x1=0,
                    y1=0,
                    x2=10,
                    y2=10,
                    class_id=None if i < open_set else 2,
                    class_name="other sign" if i < open_set else "speed limit 50",
                    category="other" if i < open_set else "prohibitory",
                    class_source="shape" if i < open_set else "classifier",
                    confidence=c,
                    text="",
                    text_confidence=0.0,
                )
            )
    return job_id


def runs(logger: WindowLogger) -> list:
    return logger.client.search_runs([logger.experiment_id()], max_results=1000)


def test_windows_are_aligned_to_the_clock_and_read_after_they_settle() -> None:
    now = START + timedelta(seconds=WINDOW_S + 10)  # the 08:00 window closed 10 s ago: not settled
    assert [w.tag for w in closed_windows(now, WINDOW_S, 2)] == ["2026-11-30T07:50:00Z/300", "2026-11-30T07:55:00Z/300"]
    assert closed_windows(AFTER, WINDOW_S, 1) == [Window(START, WINDOW_S)]
    assert closed_windows(AFTER, WINDOW_S, 1)[0].end == START + timedelta(seconds=WINDOW_S)


def test_one_run_per_model_version_with_the_windows_figures(engine: Engine, logger: WindowLogger) -> None:
    at = START + timedelta(seconds=10)
    for i in range(100):  # latencies 1..100 ms: p50 50, p95 95, p99 99
        add_job(engine, at, OLD, [0.9], total_ms=float(i + 1))
    low = add_job(engine, at, OLD, [0.3, 0.26, 0.8], open_set=1)
    add_job(engine, at, NEW, [0.7, 0.6])
    add_job(engine, at, None, failed=True)
    add_job(engine, START - timedelta(seconds=1), NEW, [0.5])  # the window before
    add_job(engine, START + timedelta(seconds=WINDOW_S), NEW, [0.5])  # the window after: still open

    logged = log_windows(engine, logger, WINDOW_S, AFTER, lookback=1)
    assert len(logged) == 3
    by_models = {r.data.tags[MODELS_TAG]: r for r in runs(logger)}
    assert set(by_models) == {aggregates.models_key(OLD), aggregates.models_key(NEW), aggregates.NO_MODEL}
    old = by_models[aggregates.models_key(OLD)]
    assert old.data.tags[WINDOW_TAG] == "2026-11-30T08:00:00Z/300"
    assert old.data.params["model.detector"] == OLD["detector"]
    assert old.info.status == "FINISHED"
    assert old.info.start_time == int(START.timestamp() * 1000)
    m = old.data.metrics
    assert (m["jobs"], m["jobs_done"], m["jobs_failed"], m["signs"]) == (101, 101, 0, 103)
    # The 101st job's total_ms is 100 too; nearest rank over 101 values.
    assert (m["total_ms_p50"], m["total_ms_p95"], m["total_ms_p99"]) == (51.0, 96.0, 100.0)
    assert m["detect_ms_p50"] == 25.5
    assert m["open_set_share"] == pytest.approx(1 / 103)
    assert m["confidence_p50"] == 0.9 and m["confidence_mean"] == pytest.approx((90 + 0.3 + 0.26 + 0.8) / 103)
    failed = by_models[aggregates.NO_MODEL].data.metrics
    assert (failed["jobs"], failed["jobs_failed"], failed["failed_share"], failed["signs"]) == (1, 1, 1.0, 0)

    artifacts = Path(old.info.artifact_uri.removeprefix("file://"))
    summary = json.loads((artifacts / "summary.json").read_text())
    assert sum(summary["confidence_histogram"]["counts"]) == 103
    assert summary["signs_by_source"] == {"classifier": 102, "shape": 1}
    sample = json.loads((artifacts / "low_confidence.json").read_text())
    assert [(s["job_id"], s["confidence"]) for s in sample["signs"][:2]] == [(low, 0.26), (low, 0.3)]
    assert len(sample["signs"]) == aggregates.LOW_CONFIDENCE_SAMPLE


def test_a_window_is_logged_once_under_repeated_and_overlapping_ticks(engine: Engine, logger: WindowLogger) -> None:
    add_job(engine, START + timedelta(seconds=5), OLD, [0.9])
    add_job(engine, START + timedelta(seconds=6), NEW, [0.8])
    assert len(log_windows(engine, logger, WINDOW_S, AFTER)) == 2
    # The next ticks, a redelivered one, and one a window later whose lookback still covers it.
    assert log_windows(engine, logger, WINDOW_S, AFTER) == []
    assert log_windows(engine, logger, WINDOW_S, AFTER + timedelta(seconds=5)) == []
    assert log_windows(engine, logger, WINDOW_S, AFTER + timedelta(seconds=WINDOW_S)) == []
    assert len(runs(logger)) == 2


def test_a_run_cut_short_is_logged_again_and_a_half_logged_window_completed(
    engine: Engine, logger: WindowLogger
) -> None:
    add_job(engine, START + timedelta(seconds=5), OLD, [0.9])
    add_job(engine, START + timedelta(seconds=6), NEW, [0.8])
    window = Window(START, WINDOW_S)
    old, new = sorted(aggregates.summarise(engine, window), key=lambda s: s.models != aggregates.models_key(OLD))
    logger.log(old, 2)  # the tick died after the first run...
    cut = logger.client.create_run(  # ...and in the middle of the second
        logger.experiment_id(),
        start_time=int(START.timestamp() * 1000),
        tags={WINDOW_TAG: window.tag, "roadsigns.window_s": str(WINDOW_S), MODELS_TAG: new.models},
    )
    logged = log_windows(engine, logger, WINDOW_S, AFTER)
    assert [s.models for s in logged] == [new.models]
    left = runs(logger)
    assert sorted(r.data.tags[MODELS_TAG] for r in left) == sorted([old.models, new.models])
    assert all(r.info.status == "FINISHED" for r in left)
    assert cut.info.run_id not in {r.info.run_id for r in left}


def test_windows_without_jobs_log_nothing(engine: Engine, logger: WindowLogger) -> None:
    assert log_windows(engine, logger, WINDOW_S, AFTER) == []
    assert runs(logger) == []
    # An empty window is read again on every tick: a range on an index, not a scan of the jobs.
    with engine.connect() as conn:
        indexes = conn.execute(text("SELECT indexdef FROM pg_indexes WHERE tablename = 'jobs'")).scalars().all()
    assert any(i.endswith("(finished_at)") for i in indexes), indexes
