"""The 43 GTSRB/GTSDB classes: names, categories, and the text a sign of each class carries."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

CATEGORIES = ("prohibitory", "danger", "mandatory", "other")


@dataclass(frozen=True)
class SignClass:
    id: int
    name: str
    category: str
    text: str | None  # what a correct reading says, for classes that carry text


@lru_cache
def all_classes() -> tuple[SignClass, ...]:
    raw = json.loads(resources.files("roadsigns.shared").joinpath("classes.json").read_text())
    out = []
    for i, full in enumerate(raw["names"]):
        m = re.fullmatch(r"(.*) \((prohibitory|danger|mandatory|other)\)", full)
        if m is None:
            raise ValueError(f"classes.json: no category in {full!r}")
        out.append(SignClass(i, m.group(1), m.group(2), raw["text"].get(str(i))))
    return tuple(out)


def get(class_id: int) -> SignClass:
    return all_classes()[class_id]


def category_index(class_id: int) -> int:
    return CATEGORIES.index(get(class_id).category)
