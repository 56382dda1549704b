"""Signs outside the 43 classes: how they are named and how sure the service says it is.

A sign is named by one of three sources (`class_source` in the API):
- "classifier": one of the 43 classes, the classifier sure of it (probability at least
  `ROADSIGNS_OPEN_SET_MIN_PROBABILITY`);
- "reading": a speed limit whose number was read confidently; the class that carries the
  number, or `class_id` null and "speed limit 40" where none does;
- "shape": `class_id` null, "other sign", the category its shape and colour show; for any
  sign the classifier is unsure of that no confident reading names.
The naming itself happens in the OCR stage (roadsigns.ocr.service), which sees the reading;
the detector stage only needs to know which proposals could end up reported.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Literal

from roadsigns.shared import classes

ClassSource = Literal["classifier", "reading", "shape"]

OTHER_SIGN = "other sign"

# An "other sign" claims only that a sign is there. Where its shape and colour show a sign
# family (a red ring or triangle, a blue disc, a red face), that claim rests on the localiser
# and the shape, not on the class probability that said the class is unknown: its
# confidence is the localiser's score times this factor. 0.5 because (1) it ranks such a
# sign below an equally well-localised sign whose class the classifier is sure of
# (probability >= 0.5 at the default setting), which keeps mAP's ranking honest, and (2) a
# confidently localised one (score >= 0.5) still reaches the default reporting threshold of
# 0.25. Where the shape shows nothing, nothing but the localiser says it is a sign at all,
# and the localiser also fires on the backs of signs, wheels and car badges (half of the
# unsure proposals scored >= 0.5 on the held-out GTSDB photos): it keeps score x probability.
OTHER_SIGN_FACTOR = 0.5

# A plausible speed limit: 5 to 130 km/h in steps of 5 (5, 10, 15, ..., 125, 130).
PLAUSIBLE_SPEED = re.compile(r"^(5|[1-9][05]|1[0-2][05]|130)$")


@lru_cache
def numbered_classes() -> dict[str, int]:
    """The speed-limit classes by the number they carry: {"20": 0, "30": 1, ...}."""
    return {c.text: c.id for c in classes.all_classes() if c.text is not None and c.text.isdigit()}


def speed_limit_name(number: str) -> str:
    return f"speed limit {int(number)}"


def other_sign_confidence(detector_confidence: float, class_probability: float, shape_seen: bool) -> float:
    """An "other sign"'s confidence: see OTHER_SIGN_FACTOR."""
    if shape_seen:
        return detector_confidence * max(class_probability, OTHER_SIGN_FACTOR)
    return detector_confidence * class_probability


def best_confidence(
    class_id: int | None, detector_confidence: float, class_probability: float, min_class_probability: float
) -> float:
    """The highest confidence the OCR stage can give a proposal, before anything is read.

    A speed-limit class (at any probability) or a class the classifier is unsure of may be
    named by a reading, at the localiser's score times the reading's confidence: at most
    the localiser's score. A class the classifier is sure of keeps score x probability.
    """
    if class_id is None or class_id in numbered_classes().values() or class_probability < min_class_probability:
        return detector_confidence
    return detector_confidence * class_probability
