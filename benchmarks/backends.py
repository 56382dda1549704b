"""Detector + classifier latency per photo: PyTorch, ONNX Runtime and OpenVINO, same photos, same run.

    python -m benchmarks.backends [PHOTOS_DIR] [--repeat N] [--imgsz 1376] [--baseline REV]

Prints one JSON object: median and p90 milliseconds per photo for each backend and each
one's ratio to PyTorch. Each backend runs in a process of its own, rounds alternating.
Every backend runs each photo at the sizes `roadsigns.detector.scales.plan` picks (for a
1360x800 photo: 800x1376 and a 256x384 coarse pass); a fixed-shape graph at its one shape.

`--baseline REV` adds `baseline`: OpenVINO as the release at git revision REV ran it, its
detector code and its shipped weights (both taken from git into a temporary folder, the child
process importing them first), measured in the same rounds; and OpenVINO's ratio to it: a
before/after of code and weights together on one noisy machine.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import cv2

BACKENDS = ("torch", "onnx", "openvino")


def measure(backend: str, photos: Path, repeat: int, imgsz: int) -> dict:
    """One backend in this process: milliseconds per photo over `repeat` passes, after a warm pass."""
    from roadsigns.detector.model import SignDetector  # the baseline child's is an earlier release's

    images = [cv2.imread(str(p)) for p in sorted(photos.glob("*.jpg"))]
    detector = SignDetector(backend=backend, device="cpu", imgsz=imgsz)
    found = sum(len(detector.detect(image).signs) for image in images)
    times = []
    for _ in range(repeat):
        for image in images:
            t0 = time.perf_counter()
            detector.detect(image)
            times.append((time.perf_counter() - t0) * 1000)
    passes = getattr(detector, "passes", None)  # releases before scale-robust inference: one fixed shape
    shapes = sorted({str(passes(*image.shape[:2]) if passes else "fixed graph shape") for image in images})
    code = str(Path(sys.modules[SignDetector.__module__].__file__ or "").parents[3])  # which release ran
    return {"times": times, "signs_found": found, "input": ", ".join(shapes), "photos": len(images), "code": code}


RELEASE_SOURCES = ("services/detector/src", "shared/src")  # what the baseline child imports from the release


def checkout_release(rev: str, into: Path) -> None:
    """The detector's and the shared package's sources at `rev`, weights included, into `into`."""
    archive = subprocess.run(["git", "archive", rev, *RELEASE_SOURCES], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", nargs="?", type=Path, default=Path("tests/data/photos"))
    parser.add_argument("--repeat", type=int, default=3, help="rounds; each round runs every backend once")
    parser.add_argument("--imgsz", type=int, default=1376)
    parser.add_argument("--baseline", metavar="REV", help="also time OpenVINO as the release at revision REV ran it")
    parser.add_argument("--one", choices=(*BACKENDS, "baseline"), help=argparse.SUPPRESS)  # a child: one backend
    args = parser.parse_args()
    if args.one:
        backend = "openvino" if args.one == "baseline" else args.one
        print(json.dumps(measure(backend, args.photos, 1, args.imgsz)))
        return
    release = tempfile.TemporaryDirectory(prefix="roadsigns-baseline-") if args.baseline else None
    if release:
        checkout_release(args.baseline, Path(release.name))
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
            env = dict(os.environ)
            if b == "baseline" and release:
                sources = [str(Path(release.name) / d) for d in RELEASE_SOURCES]
                env["PYTHONPATH"] = os.pathsep.join([*sources, env.get("PYTHONPATH", "")])
            out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout
            runs[b].append(json.loads(out.strip().splitlines()[-1]))

    def summary(b: str) -> dict[str, float | int | str]:
        t = sorted(ms for run in runs[b] for ms in run["times"])
        return {
            "median_ms": round(statistics.median(t), 1),
            "p90_ms": round(t[int(0.9 * (len(t) - 1))], 1),
            "signs_found": runs[b][0]["signs_found"],
            "input": runs[b][0]["input"],
            "code": runs[b][0]["code"],
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
