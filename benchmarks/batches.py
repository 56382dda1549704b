"""Photos a second at detector batches of 1, 8 and 32, and the queued services' rate with batching
(issue 14's GPU section of `make bench`; it runs on the CPU too, with the CPU's figures).

    python -m benchmarks.batches [PHOTOS_DIR] [--sizes 1,8,32] [--rounds 3] [--queued 0]
                                 [--queued-batches 1,8] [--backend auto] [--device auto]

1. in process: the detector `ROADSIGNS_BACKEND`/`ROADSIGNS_DEVICE` would pick (`auto`: torch in
   FP16 on a CUDA device, else OpenVINO), photo after photo (`SignDetector.detect`), then
   `batching.detect_batch` on batches of each size (the sample photos cycled), each size warmed
   twice first (OpenVINO compiles a graph per shape it meets twice, a batch's size included),
   then timed over `--rounds` rounds: images/s from the median round;
2. with `--queued N`: N photo jobs submitted at once through the gateway, Redis, the three pools
   and Postgres (`benchmarks.pipeline.queued`), once per `--queued-batches` value of
   `ROADSIGNS_DETECTOR_BATCH`: the end-to-end rate, which on this 2-core machine the OCR pool
   and the gateway share with the detector.

Prints one JSON object (and writes it to out/batches.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2

from roadsigns.detector.batching import detect_batch
from roadsigns.detector.model import SignDetector


def precision(detector: SignDetector) -> str:
    """What the localiser computes in: torch's dtype, OpenVINO's inference precision, else float32."""
    dtype = getattr(detector.localiser, "dtype", None)
    if dtype is not None:
        return str(dtype).removeprefix("torch.")
    compiled = getattr(detector.localiser, "compiled", None)
    if compiled is not None:
        hint = compiled.get_property("INFERENCE_PRECISION_HINT")  # an openvino Type: "bf16", "f32"
        return str(hint.get_type_name() if hasattr(hint, "get_type_name") else hint)
    return "float32"


def in_process(photos: Path, sizes: list[int], rounds: int, backend: str, device: str) -> dict[str, Any]:
    images = [cv2.imread(str(p)) for p in sorted(photos.glob("*.jpg"))]
    detector = SignDetector(backend=backend, device=device)
    out: dict[str, Any] = {
        "backend": detector.backend,
        "device": detector.device,
        "precision": precision(detector),
        "photos": len(images),
        "input": sorted({str([p.shape for p in detector.passes(*image.shape[:2])]) for image in images}),
    }
    for image in images:  # warm
        detector.detect(image)
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for image in images:
            detector.detect(image)
        times.append(time.perf_counter() - t0)
    out["one_by_one_images_per_s"] = round(len(images) / statistics.median(times), 2)
    out["batches"] = {}
    for size in sizes:
        batch = [images[i % len(images)] for i in range(size)]
        for _ in range(2):  # warm: allocations, and OpenVINO's graph for this batch's shapes
            detect_batch(detector, batch)
        times = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            detect_batch(detector, batch)
            times.append(time.perf_counter() - t0)
        out["batches"][str(size)] = {
            "images_per_s": round(size / statistics.median(times), 2),
            "ms_per_batch": round(statistics.median(times) * 1000, 1),
        }
    return out


def queued_rate(jobs: int, batches: list[int], backend: str, device: str) -> dict[str, Any]:
    """`jobs` photo jobs at once through the services, the detector worker at each batch."""
    from benchmarks.pipeline import PHOTOS, queued
    from tests.stack import Stack

    photos = [PHOTOS[i % len(PHOTOS)].read_bytes() for i in range(jobs)]
    root = Path(tempfile.mkdtemp(prefix="roadsigns-batches-"))
    stack = Stack.create(root, ROADSIGNS_BACKEND=backend, ROADSIGNS_DEVICE=device)
    out: dict[str, Any] = {}
    try:
        for pool in ("ocr", "tracker"):
            stack.start_worker(pool)
        stack.start_gateway()
        for batch in batches:
            name = f"detector-{batch}"
            env = {"ROADSIGNS_DETECTOR_BATCH": str(batch), "ROADSIGNS_DETECTOR_BATCH_WAIT_MS": "10"}
            stack.start_worker("detector", name=name, extra_env=env)
            stack.wait_workers_ready([name, "ocr", "tracker"])
            result = queued(stack, photos)
            out[str(batch)] = {k: result[k] for k in ("images", "failed", "images_per_s", "p50_ms", "p95_ms")}
            out[str(batch)]["stage_share"] = result["stage_share"]
            stack.stop(name)
    finally:
        stack.close()
        shutil.rmtree(root, ignore_errors=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", nargs="?", type=Path, default=Path("tests/data/photos"))
    parser.add_argument("--sizes", default="1,8,32", help="batch sizes, comma-separated")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backend", default=os.environ.get("ROADSIGNS_BACKEND", "auto"))
    parser.add_argument("--device", default=os.environ.get("ROADSIGNS_DEVICE", "auto"))
    parser.add_argument("--queued", type=int, default=0, help="photo jobs through the services (0: skip)")
    parser.add_argument("--queued-batches", default="1,8", help="ROADSIGNS_DETECTOR_BATCH values for --queued")
    args = parser.parse_args()
    report: dict[str, Any] = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
        "detector": in_process(
            args.photos, [int(s) for s in args.sizes.split(",")], args.rounds, args.backend, args.device
        ),
    }
    if args.queued:
        batches = [int(b) for b in args.queued_batches.split(",")]
        report["queued"] = queued_rate(args.queued, batches, args.backend, args.device)
    Path("out").mkdir(exist_ok=True)
    Path("out/batches.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
