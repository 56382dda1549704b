"""Detector + classifier latency per photo: PyTorch, ONNX Runtime and OpenVINO, same photos, same run.

    python -m benchmarks.backends [PHOTOS_DIR] [--repeat N] [--imgsz 1376]

Prints one JSON object: median and p90 milliseconds per photo for each backend and each
one's ratio to PyTorch. Each backend runs in a process of its own, rounds alternating.
PyTorch runs at --imgsz (letterboxed to a multiple of 32: 1376x832 for a 1360x800 photo);
the graphs at the fixed shape they were exported at.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import cv2

from roadsigns.detector.model import SignDetector

BACKENDS = ("torch", "onnx", "openvino")


def measure(backend: str, photos: Path, repeat: int, imgsz: int) -> dict:
    """One backend in this process: milliseconds per photo over `repeat` passes, after a warm pass."""
    images = [cv2.imread(str(p)) for p in sorted(photos.glob("*.jpg"))]
    detector = SignDetector(backend=backend, device="cpu", imgsz=imgsz)
    found = sum(len(detector.detect(image).signs) for image in images)
    times = []
    for _ in range(repeat):
        for image in images:
            t0 = time.perf_counter()
            detector.detect(image)
            times.append((time.perf_counter() - t0) * 1000)
    return {"times": times, "signs_found": found, "input": str(detector.imgsz), "photos": len(images)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", nargs="?", type=Path, default=Path("tests/data/photos"))
    parser.add_argument("--repeat", type=int, default=3, help="rounds; each round runs every backend once")
    parser.add_argument("--imgsz", type=int, default=1376)
    parser.add_argument("--one", choices=BACKENDS, help=argparse.SUPPRESS)  # a child measuring one backend
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.photos, 1, args.imgsz)))
        return
    # Each backend in a process of its own (their thread pools would otherwise compete),
    # rounds rotating the order so that a noisy neighbour hurts all alike.
    runs: dict[str, list[dict]] = {b: [] for b in BACKENDS}
    for r in range(args.repeat):
        for b in BACKENDS[r % len(BACKENDS) :] + BACKENDS[: r % len(BACKENDS)]:
            cmd = [
                sys.executable,
                "-m",
                "benchmarks.backends",
                str(args.photos),
                "--one",
                b,
                "--imgsz",
                str(args.imgsz),
            ]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            runs[b].append(json.loads(out.strip().splitlines()[-1]))

    def summary(b: str) -> dict[str, float | int | str]:
        t = sorted(ms for run in runs[b] for ms in run["times"])
        return {
            "median_ms": round(statistics.median(t), 1),
            "p90_ms": round(t[int(0.9 * (len(t) - 1))], 1),
            "signs_found": runs[b][0]["signs_found"],
            "input": runs[b][0]["input"],
        }

    report = {
        "photos": runs["torch"][0]["photos"],
        "repeat": args.repeat,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        **{b: summary(b) for b in BACKENDS},
    }
    for b in BACKENDS[1:]:
        report[f"{b}_over_torch"] = round(report[b]["median_ms"] / report["torch"]["median_ms"], 3)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
