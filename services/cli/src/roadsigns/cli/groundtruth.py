"""GTSDB-format ground truth: `name;left;top;right;bottom;class_id`, pixels inclusive."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path


class GroundTruthError(ValueError):
    pass


@dataclass(frozen=True)
class Box:
    left: int
    top: int
    right: int  # inclusive
    bottom: int  # inclusive
    class_id: int

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
        if len(parts) != 6:
            raise GroundTruthError(
                f"{path}:{number}: expected 6 ';'-separated fields "
                f"(name;left;top;right;bottom;class), got {len(parts)}: {line!r}"
            )
        try:
            left, top, right, bottom, class_id = (int(p) for p in parts[1:])
        except ValueError:
            raise GroundTruthError(f"{path}:{number}: fields 2-6 must be integers: {line!r}") from None
        if right < left or bottom < top or min(left, top) < 0:
            raise GroundTruthError(f"{path}:{number}: impossible box: {line!r}")
        if not 0 <= class_id < 43:
            raise GroundTruthError(f"{path}:{number}: class {class_id} is not one of the 43 classes")
        boxes[parts[0]].append(Box(left, top, right, bottom, class_id))
    return dict(boxes)
