"""Micro-batching across queued jobs: the detect tasks running at once in one worker hand their
photos to one thread, which runs them through the model together (`ROADSIGNS_DETECTOR_BATCH`).

How it fits the stage wrapper (roadsigns.shared.pipeline.stage_task): every photo stays its own
Celery task. With a batch of N the detector worker runs Celery's thread pool with N threads, so
it holds N detect messages at once (prefetch is concurrency x 1: sized to the batch). Each task
does what it does today, for its own job: counts its delivery and leaves its progress mark, reads
and decodes its photo (an unreadable one fails there, before any batch), then calls `submit`,
which blocks that thread until its photo's result is back, builds its own `DetectResult`, sends
it on, and is acknowledged on its own (late acks). Only the model calls are shared: the
collector thread takes the first photo waiting, waits at most `wait_s` for up to `size - 1`
more, and runs them as one batch (roadsigns.detector.batching).

What a batch must not do is let one photo fail or delay its neighbours:

- a batch whose model call raises is run again one photo at a time, so only the photo that
  raises gets the exception (its job fails through `stage_task`, as a bad photo does today);
- a photo that arrives marked `alone` runs in a batch of its own. The worker marks a job whose
  detect message was delivered before: its process may have died on it (roadsigns.shared.
  deliveries). A photo that kills the process kills its whole first batch, and every job of it
  is delivered again; each then runs alone, so the others succeed and only the killer goes on
  dying, towards its own poison limit, never again taking its neighbours' deliveries with it;
- a photo whose result is not back after `timeout_s` (the task time limit: the thread pool
  cannot kill a task as the prefork pool does) fails with that reason.

Why not celery-batches (PyPI, `Batches` task class, 0.11): it hands one task a list of requests,
so `stage_task`'s per-message work (delivery count, progress mark, failure, forwarding) would have
to be written again over that list; with late acks it acknowledges the whole batch when the batch
task returns and sets no error callback, so a child lost mid-batch leaves every message of the
batch unacknowledged until the broker's visibility timeout (an hour here) instead of rejecting it
back to the queue; and it passes no time limit to the pool, so `StageTask.on_failure` never hears
of one. The thread pool has the same limit on a crash (a dead process is the whole worker, its
messages wait for the visibility timeout) but keeps each job a task of its own.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class TimedOut(RuntimeError):
    """A photo's batch did not answer within the task time limit."""


@dataclass
class _Item(Generic[T, R]):
    value: T
    alone: bool
    future: Future[R] = field(default_factory=Future)


class Collector(Generic[T, R]):
    """Runs `run_batch` (items -> one result each, in order) in one thread on up to `size` items at a
    time, gathered from the threads calling `submit` for at most `wait_s` after the first."""

    def __init__(
        self,
        run_batch: Callable[[Sequence[T]], Sequence[R]],
        size: int,
        wait_s: float,
        log: logging.Logger,
        on_batch: Callable[[int, float], None] = lambda n, seconds: None,
    ) -> None:
        if size < 1:
            raise ValueError(f"a batch holds at least one item, not {size}")
        self.run_batch, self.size, self.wait_s, self.log, self.on_batch = run_batch, size, wait_s, log, on_batch
        self._queue: queue.Queue[_Item[T, R]] = queue.Queue()
        self._held: deque[_Item[T, R]] = deque()  # `alone` items taken while gathering a batch
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def start(self, before: Callable[[], object] = lambda: None) -> None:
        """Start the collector thread (once); `before` runs in it first (the model's load)."""
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, args=(before,), name="detect-batches", daemon=True)
                self._thread.start()

    def submit(self, value: T, alone: bool = False, timeout_s: float | None = None) -> R:
        """This item's result, once its batch has run (its exception, if it raised on its own)."""
        self.start()
        item: _Item[T, R] = _Item(value, alone)
        self._queue.put(item)
        try:
            return item.future.result(timeout_s)
        except FutureTimeout:
            raise TimedOut(f"no answer within {timeout_s:g} s") from None

    def _gather(self) -> list[_Item[T, R]]:
        if self._held:
            return [self._held.popleft()]
        first = self._queue.get()
        batch = [first]
        if first.alone:
            return batch
        deadline = time.monotonic() + self.wait_s
        while len(batch) < self.size:
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if item.alone:
                self._held.append(item)  # each runs on its own after this batch
            else:
                batch.append(item)
        return batch

    def _loop(self, before: Callable[[], object]) -> None:
        try:
            before()
        except Exception:  # the first batch builds it again and fails its jobs with the reason
            self.log.exception("detector not loaded before the first batch")
        while True:
            batch = [item for item in self._gather() if item.future.set_running_or_notify_cancel()]
            if batch:
                self._run(batch)

    def _run(self, batch: list[_Item[T, R]]) -> None:
        t0 = time.perf_counter()
        try:
            results = self.run_batch([item.value for item in batch])
        except Exception as exc:
            if len(batch) == 1:
                batch[0].future.set_exception(exc)
                return
            self.log.warning("a batch of %d raised (%s): each photo again on its own", len(batch), exc)
            for item in batch:
                try:
                    item.future.set_result(self.run_batch([item.value])[0])
                except Exception as each:
                    item.future.set_exception(each)
            return
        seconds = time.perf_counter() - t0
        for item, result in zip(batch, results, strict=True):
            item.future.set_result(result)
        self.on_batch(len(batch), seconds)
