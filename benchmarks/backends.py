"""Detector + classifier latency per photo: PyTorch against ONNX Runtime, same photos, same run.

    python -m benchmarks.backends [PHOTOS_DIR] [--repeat N] [--imgsz 1376]

Prints one JSON object: median and p90 milliseconds per photo for each backend and
the ratio. Backends alternate photo by photo so that a noisy neighbour hurts both alike.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import cv2

from roadsigns.detector.model import SignDetector


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", nargs="?", type=Path, default=Path("tests/data/photos"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--imgsz", type=int, default=1376)
    args = parser.parse_args()
    images = [cv2.imread(str(p)) for p in sorted(args.photos.glob("*.jpg"))]
    detectors = {b: SignDetector(backend=b, device="cpu", imgsz=args.imgsz) for b in ("torch", "onnx")}
    times: dict[str, list[float]] = {b: [] for b in detectors}
    found: dict[str, int] = {b: 0 for b in detectors}
    for _ in range(args.repeat):
        for image in images:
            for backend, detector in detectors.items():
                t0 = time.perf_counter()
                out = detector.detect(image)
                times[backend].append((time.perf_counter() - t0) * 1000)
                found[backend] += len(out.signs)

    def summary(b: str) -> dict[str, float]:
        t = sorted(times[b])
        return {
            "median_ms": round(statistics.median(t), 1),
            "p90_ms": round(t[int(0.9 * (len(t) - 1))], 1),
            "signs_found": found[b] // args.repeat,
            "input": str(detectors[b].imgsz),
        }

    report = {
        "photos": len(images),
        "repeat": args.repeat,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch": summary("torch"),
        "onnx": summary("onnx"),
    }
    report["onnx_over_torch"] = round(report["onnx"]["median_ms"] / report["torch"]["median_ms"], 3)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
