"""Print `roadsigns analyze` JSON as a short table: `python -m roadsigns.cli.summary FILE`."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(path: str) -> None:
    for result in json.loads(Path(path).read_text()):
        name = Path(result["file"]).name
        if "error" in result:
            print(f"{name}: error: {result['error']}")
            continue
        print(f"{name}: {len(result['signs'])} sign(s), {result['timings_ms']['total_ms']:.0f} ms")
        for s in result["signs"]:
            box = ",".join(f"{v:.0f}" for v in s["bbox"])
            text = f" reads {s['text']!r}" if s["text"] else ""
            print(f"  [{box}] {s['class_name']} ({s['category']}) {s['confidence']:.2f}{text}")


if __name__ == "__main__":
    main(sys.argv[1])
