"""One way for every pool to hold its models: built once per worker process, never shared across fork.

Celery's prefork pool forks its children from the parent. A model loaded in the parent is
copied into every child with whatever threads, sessions and file handles it holds, and ONNX
Runtime, OpenVINO, CUDA and SQLAlchemy do not survive that. So a resource is built inside
the process that uses it: `warm()` builds it in each child as the child starts (Celery's
`worker_process_init`), before the first task; a call in any other process builds its own.

`Watched` is a `PerChild` that follows what should serve (a registry alias) and replaces the
resource in each child without a restart: a thread builds the new one beside the old one, and
only then swaps the reference.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar, cast

from celery.signals import worker_process_init

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)


class PerChild(Generic[T]):
    """`resource()` returns this process's instance, building it on the first call in the process."""

    def __init__(self, build: Callable[[], T]) -> None:
        self._build = build
        self._pid: int | None = None
        self._value: T | None = None

    def __call__(self) -> T:
        if self._pid != os.getpid():  # first use here, or a copy inherited from the process that forked this one
            self._value, self._pid = self._build(), os.getpid()
        return cast(T, self._value)

    def warm(self) -> PerChild[T]:
        """Build it in every worker child as the child starts, so the first task does not wait for the load."""

        def _warm(**_: Any) -> None:
            self()

        worker_process_init.connect(_warm, weak=False)
        return self


class Watched(PerChild[T], Generic[T, K]):
    """A `PerChild` that a thread in each child keeps on what `source()` says should serve.

    `source()` names what should serve (a hashable key: the registry versions an alias names);
    `build(key)` builds it; `accept(value)` raises if a new value must not replace the one serving
    (a smoke test). Every `every_s` seconds the thread asks `source()`; when the key changes it
    builds the new value beside the one serving, checks it, and then swaps the reference. A task
    takes the reference once, at its start (`resource()`), so the task in flight finishes on what
    it began with and the next one gets the new value: no task waits for a load or fails because
    of one. A key whose build (or check) raised is refused: the old value keeps serving,
    `refused(key, exc)` is told once, and that key is not built again (the source has to name
    another). A source that cannot be asked (the registry is down) is logged and asked again next
    time.
    """

    def __init__(
        self,
        build: Callable[[K], T],
        source: Callable[[], K],
        every_s: float,
        log: logging.Logger,
        accept: Callable[[T], None] = lambda value: None,
        swapped: Callable[[K, T, T], None] = lambda key, new, old: None,
        refused: Callable[[K, Exception], None] = lambda key, exc: None,
    ) -> None:
        super().__init__(self._first)
        self._build_key, self._source, self.every_s, self._log = build, source, every_s, log
        self._accept, self._swapped, self._refused_hook = accept, swapped, refused
        self.key: K | None = None
        self._refused: set[K] = set()

    def _first(self) -> T:
        key = self._source()
        value = self._build_key(key)
        self.key, self._refused = key, set()
        return value

    def __call__(self) -> T:
        if self._pid != os.getpid():  # first use in this process: build, then watch (threads do not survive fork)
            super().__call__()
            if self.every_s > 0:
                threading.Thread(target=self._watch, name="perchild-watch", daemon=True).start()
        return cast(T, self._value)

    def _watch(self) -> None:
        while True:
            time.sleep(self.every_s)
            try:
                self.check()
            except Exception:  # noqa: BLE001 - a bug in a hook must not end the watching
                self._log.exception("watching what to serve failed; still serving %s", self.key)

    def check(self) -> bool:
        """Ask the source once; build and swap if it names something new. True if a new value now serves."""
        try:
            key = self._source()
        except Exception as exc:  # noqa: BLE001 - the source unreachable: keep serving, ask again later
            self._log.warning("cannot ask what to serve (%s: %s); still serving %s", type(exc).__name__, exc, self.key)
            return False
        if key == self.key or key in self._refused:
            return False
        try:
            value = self._build_key(key)
            self._accept(value)
        except Exception as exc:  # noqa: BLE001 - whatever a broken model raises, the old one keeps serving
            self._refused.add(key)
            self._refused_hook(key, exc)
            return False
        old = cast(T, self._value)
        self._value, self.key = value, key  # one reference assignment: a task sees the old value or the new one
        self._swapped(key, value, old)
        return True
