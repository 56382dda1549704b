"""Detector + classifier latency per photo: PyTorch, ONNX Runtime and OpenVINO, same photos, same run.

    python -m benchmarks.backends [PHOTOS_DIR] [--repeat N] [--imgsz 1376] [--baseline DIR]

Prints one JSON object: median and p90 milliseconds per photo for each backend and each
one's ratio to PyTorch. Each backend runs in a process of its own, rounds alternating.
Every backend runs each photo at the sizes `roadsigns.detector.scales.plan` picks (for a
1360x800 photo: 800x1376 and a 256x384 coarse pass); a fixed-shape graph at its one shape.

`--baseline DIR` adds `baseline`: OpenVINO on DIR/detector.onnx and DIR/classifier.onnx
(e.g. an earlier release's files), measured in the same rounds, and its ratio to OpenVINO
on the current files: a before/after on one noisy machine.
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


def measure(backend: str, photos: Path, repeat: int, imgsz: int, weights: Path | None = None) -> dict:
    """One backend in this process: milliseconds per photo over `repeat` passes, after a warm pass.

    `weights`: a folder with detector.onnx and classifier.onnx to run instead of the shipped files.
    """
    images = [cv2.imread(str(p)) for p in sorted(photos.glob("*.jpg"))]
    files = (weights / "detector.onnx", weights / "classifier.onnx") if weights else (None, None)
    detector = SignDetector(*files, backend=backend, device="cpu", imgsz=imgsz)
    found = sum(len(detector.detect(image).signs) for image in images)
    times = []
    for _ in range(repeat):
        for image in images:
            t0 = time.perf_counter()
            detector.detect(image)
            times.append((time.perf_counter() - t0) * 1000)
    shapes = sorted({str(detector.passes(*image.shape[:2])) for image in images})
    return {"times": times, "signs_found": found, "input": ", ".join(shapes), "photos": len(images)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", nargs="?", type=Path, default=Path("tests/data/photos"))
    parser.add_argument("--repeat", type=int, default=3, help="rounds; each round runs every backend once")
    parser.add_argument("--imgsz", type=int, default=1376)
    parser.add_argument("--baseline", type=Path, metavar="DIR", help="also time OpenVINO on the weights in DIR")
    parser.add_argument("--one", choices=(*BACKENDS, "baseline"), help=argparse.SUPPRESS)  # a child: one backend
    args = parser.parse_args()
    if args.one:
        backend, weights = ("openvino", args.baseline) if args.one == "baseline" else (args.one, None)
        print(json.dumps(measure(backend, args.photos, 1, args.imgsz, weights)))
        return
    # Each backend in a process of its own (their thread pools would otherwise compete),
    # rounds rotating the order so that a noisy neighbour hurts all alike.
    variants = (*BACKENDS, "baseline") if args.baseline else BACKENDS
    runs: dict[str, list[dict]] = {b: [] for b in variants}
    for r in range(args.repeat):
        for b in variants[r % len(variants) :] + variants[: r % len(variants)]:
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
            if args.baseline:
                cmd += ["--baseline", str(args.baseline)]
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
        **{b: summary(b) for b in variants},
    }
    for b in BACKENDS[1:]:
        report[f"{b}_over_torch"] = round(report[b]["median_ms"] / report["torch"]["median_ms"], 3)
    if args.baseline:
        report["openvino_over_baseline"] = round(report["openvino"]["median_ms"] / report["baseline"]["median_ms"], 3)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
