"""What a detector worker process serves: the shipped or configured files, or the registry alias's
versions, followed as the alias moves (`ROADSIGNS_MODEL_POLL_S`).

Every child watches the alias itself (`roadsigns.shared.perchild.Watched`): it asks the registry
which versions the alias names, and when they change it loads them beside the pair serving, runs
them on the shipped sample photo, and only then serves them. A pair that does not load or fails
that smoke test is refused: the old pair keeps serving, `roadsigns_model_refused_total` counts it
and an error names it. Polling needs no message to arrive: a worker that was down or busy when an
alias moved catches up on its next look.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import cv2

from roadsigns.detector.model import SignDetector
from roadsigns.detector.service import build_detector
from roadsigns.shared.metrics import MODEL_INFO, MODEL_REFUSED, MODEL_SWAPS
from roadsigns.shared.perchild import PerChild, Watched
from roadsigns.shared.settings import Settings

# A corner of GTSDB photo 00330 with one speed-limit sign ("speed limit 50", 66 px): the shipped
# pair finds it with confidence 0.83.
SAMPLE = Path(__file__).parent / "samples" / "smoke.jpg"

Versions = tuple[tuple[str, str], ...]  # (part, registry version) pairs, sorted: hashable


class SmokeTestFailed(RuntimeError):
    """A model pair that loads but does not do the job on the sample photo."""


def smoke_test(detector: SignDetector) -> None:
    """At least one sign proposed on the sample photo, with finite boxes and scores."""
    image = cv2.imread(str(SAMPLE))
    if image is None:
        raise FileNotFoundError(f"the sample photo {SAMPLE} is missing from the package")
    out = detector.detect(image, 0.0)
    if not out.signs:
        raise SmokeTestFailed(f"no sign found on the sample photo {SAMPLE.name} (the shipped models find one)")
    for f in out.signs:
        if not all(math.isfinite(v) for v in (*f.bbox, f.detector_confidence, f.class_probability)):
            raise SmokeTestFailed(f"non-finite output on the sample photo: {f.bbox}, {f.confidence}")


def serving(settings: Settings, log: logging.Logger) -> PerChild[SignDetector]:
    """The detector of this process: followed through the registry when an alias is set and polled."""

    def loaded(detector: SignDetector) -> SignDetector:
        log.info("models loaded in %.1f s: %s", detector.load_seconds, detector.versions)
        return detector

    alias, uri = settings.model_registry_alias, settings.mlflow_tracking_uri
    if not (alias and uri) or settings.model_poll_s <= 0:
        return PerChild(lambda: loaded(build_detector(settings)))
    from roadsigns.detector import registry

    def source() -> Versions:
        return tuple(sorted(registry.resolve(uri, alias).items()))

    def build(key: Versions) -> SignDetector:
        return loaded(build_detector(settings, dict(key)))

    def accept(new: SignDetector) -> None:
        try:
            smoke_test(new)
        except Exception:
            _unlist(new.versions, holder().versions)
            raise

    def swapped(key: Versions, new: SignDetector, old: SignDetector) -> None:
        MODEL_SWAPS.labels("detector").inc()
        _unlist(old.versions, new.versions)
        log.info("now serving %s (was %s), without a restart", new.versions, old.versions)

    def refused(key: Versions, exc: Exception) -> None:
        reason = "smoke" if isinstance(exc, SmokeTestFailed) else "load"
        MODEL_REFUSED.labels("detector", reason).inc()
        log.error(
            "refused %s %s: %s (%s: %s); still serving %s",
            alias,
            dict(key),
            "it fails the smoke test" if reason == "smoke" else "it does not load",
            type(exc).__name__,
            str(exc)[:300],
            holder().versions,
        )

    holder: Watched[SignDetector, Versions] = Watched(
        build, source, settings.model_poll_s, log, accept, swapped, refused
    )
    return holder


def _unlist(versions: dict[str, str], serving: dict[str, str]) -> None:
    """This process no longer serves `versions` (but for those `serving` still names)."""
    for part, version in versions.items():
        if serving.get(part) != version:
            MODEL_INFO.labels(part, version).set(0)
