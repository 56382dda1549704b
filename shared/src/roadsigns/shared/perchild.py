"""One way for every pool to hold its models: built once per worker process, never shared across fork.

Celery's prefork pool forks its children from the parent. A model loaded in the parent is
copied into every child with whatever threads, sessions and file handles it holds, and ONNX
Runtime, OpenVINO, CUDA and SQLAlchemy do not survive that. So a resource is built inside
the process that uses it: `warm()` builds it in each child as the child starts (Celery's
`worker_process_init`), before the first task; a call in any other process builds its own.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Generic, TypeVar, cast

from celery.signals import worker_process_init

T = TypeVar("T")


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
