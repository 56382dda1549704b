"""`Watched`, deterministically: what a detector child does when its alias moves, driven by `check()`."""

from __future__ import annotations

import logging

import pytest

from roadsigns.shared.perchild import Watched

LOG = logging.getLogger("roadsigns.test")


class Source:
    def __init__(self, key: str) -> None:
        self.key, self.down = key, False

    def __call__(self) -> str:
        if self.down:
            raise ConnectionError("registry down")
        return self.key


def build(key: str) -> dict[str, str]:
    if key.startswith("garbage"):
        raise ValueError(f"{key}: not a model")
    return {"version": key}


def test_swaps_when_the_source_moves_and_refuses_what_does_not_build_or_pass(caplog: pytest.LogCaptureFixture) -> None:
    source, swaps, refusals = Source("1"), [], []

    def accept(value: dict[str, str]) -> None:
        if value["version"] == "smoky":
            raise RuntimeError("no sign on the sample photo")

    held = Watched(
        build,
        source,
        0,  # no thread: the test drives check()
        LOG,
        accept,
        lambda key, new, old: swaps.append((old["version"], new["version"])),
        lambda key, exc: refusals.append((key, str(exc))),
    )
    first = held()
    assert first == {"version": "1"} and held.key == "1"
    assert not held.check()  # nothing moved

    source.key = "garbage"
    assert not held.check() and not held.check()  # refused once, not rebuilt on every look
    assert refusals == [("garbage", "garbage: not a model")]
    assert held() is first

    source.key = "smoky"
    assert not held.check()
    assert refusals[-1] == ("smoky", "no sign on the sample photo") and held() is first

    source.down = True
    with caplog.at_level(logging.WARNING):
        assert not held.check()
    assert "registry down" in caplog.text and held() is first

    source.down, source.key = False, "2"
    in_flight = held()  # a task took its model before the swap ...
    assert held.check()
    assert in_flight is first and held() == {"version": "2"}  # ... and keeps it; the next task gets the new one
    assert swaps == [("1", "2")] and held.key == "2"
