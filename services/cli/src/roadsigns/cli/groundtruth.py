"""GTSDB-format ground truth: `name;left;top;right;bottom;class_id`, pixels inclusive.

One extension: class -1, a sign outside the 43 classes, and an optional seventh field, the
sign's text. A speed limit whose number no class carries (`photo.jpg;10;20;99;109;-1;40`) is
named "speed limit 40" by its reading. A class -1 sign without text (`photo.jpg;10;20;99;109;-1`:
a parking or information sign, a chevron board) counts only for finding signs: class-agnostic
recall and precision, not naming or reading. On a sign of the 43 the text overrides the class's
own. GTSDB's own files never have either.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from roadsigns.shared import classes


class GroundTruthError(ValueError):
    pass


@dataclass(frozen=True)
class Box:
    left: int
    top: int
    right: int  # inclusive
    bottom: int  # inclusive
    class_id: int  # -1: none of the 43 (a speed limit known by its text, or a sign only to be found)
    text: str | None = None  # the text the sign carries, where the gt file gives it

    @property
    def expected_text(self) -> str | None:
        """What a reader should read on the sign: the file's text, else its class's (None: no text)."""
        if self.text is not None:
            return self.text
        return classes.get(self.class_id).text if self.class_id >= 0 else None

    @property
    def category(self) -> str | None:
        """Its class's category; a class-less sign whose text is a number is a speed limit
        (prohibitory), as the service names it; any other class-less sign has none here."""
        if self.class_id >= 0:
            return classes.get(self.class_id).category
        return "prohibitory" if self.text is not None and self.text.isdigit() else None

    @property
    def xyxy(self) -> tuple[float, float, float, float]:
        """As pixel edges (exclusive right/bottom), the convention detections use."""
        return (self.left, self.top, self.right + 1, self.bottom + 1)


def read_gt(path: Path) -> dict[str, list[Box]]:
    """Parse a gt.txt; raise GroundTruthError naming the line on anything malformed."""
    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise GroundTruthError(f"cannot read ground truth {path}: {exc}") from None
    boxes: dict[str, list[Box]] = defaultdict(list)
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            continue
        parts = line.split(";")
        if len(parts) not in (6, 7):
            raise GroundTruthError(
                f"{path}:{number}: expected 6 ';'-separated fields "
                f"(name;left;top;right;bottom;class, and optionally the sign's text), got {len(parts)}: {line!r}"
            )
        text = parts[6].strip() if len(parts) == 7 else None
        try:
            left, top, right, bottom, class_id = (int(p) for p in parts[1:6])
        except ValueError:
            raise GroundTruthError(f"{path}:{number}: fields 2-6 must be integers: {line!r}") from None
        if right < left or bottom < top or min(left, top) < 0:
            raise GroundTruthError(f"{path}:{number}: impossible box: {line!r}")
        if not -1 <= class_id < 43:
            raise GroundTruthError(f"{path}:{number}: class {class_id} is not one of the 43 classes (or -1)")
        boxes[parts[0]].append(Box(left, top, right, bottom, class_id, text or None))
    return dict(boxes)
