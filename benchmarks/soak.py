"""`make soak`: many jobs through the running services, memory of every process over time.

    python -m benchmarks.soak --jobs 2000

Starts the stack (as the tests do), keeps a bounded number of jobs in flight, samples the
resident memory of every service's process tree every `--every` seconds, and prints a table;
the last column says whether each worker stayed within 10% of its memory after warm-up.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import httpx
import psutil

from tests.stack import Stack

PHOTOS = sorted(Path("tests/data/photos").glob("*.jpg"))


def rss_mb(pid: int) -> float:
    root = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--in-flight", type=int, default=8)
    parser.add_argument("--every", type=float, default=15.0, help="seconds between memory samples")
    args = parser.parse_args()
    photos = [p.read_bytes() for p in PHOTOS]
    root = Path(tempfile.mkdtemp(prefix="roadsigns-soak-"))
    stack = Stack.create(root)
    samples: list[dict] = []
    try:
        for pool in ("detector", "ocr", "tracker"):
            stack.start_worker(pool)
        stack.start_gateway()
        stack.wait_workers_ready(["detector", "ocr", "tracker"])
        pids = {name: proc.pid for name, proc in stack.procs.items()}
        t0 = last = time.monotonic()
        submitted, finished, failed = 0, 0, 0
        pending: list[str] = []
        with httpx.Client(base_url=stack.gateway_url, timeout=60) as client:
            while finished < args.jobs:
                while submitted < args.jobs and len(pending) < args.in_flight:
                    data = photos[submitted % len(photos)]
                    pending.append(client.post("/jobs", files={"file": ("s.jpg", data, "image/jpeg")}).json()["id"])
                    submitted += 1
                # One list request per look (the newest jobs hold every pending one), not one per job.
                statuses = {j["id"]: j["status"] for j in client.get("/jobs", params={"limit": 100}).json()["items"]}
                ended = [i for i in pending if statuses.get(i) in ("done", "failed")]
                finished += len(ended)
                failed += sum(statuses[i] == "failed" for i in ended)
                pending = [i for i in pending if i not in ended]
                if time.monotonic() - last >= args.every or finished == args.jobs:
                    last = time.monotonic()
                    samples.append(
                        {
                            "t_s": round(last - t0),
                            "jobs_done": finished,
                            **{n: round(rss_mb(p), 1) for n, p in pids.items()},
                        }
                    )
                    print(json.dumps(samples[-1]), flush=True)
                time.sleep(0.1)
    finally:
        stack.close()
        shutil.rmtree(root, ignore_errors=True)
    names = [k for k in samples[0] if k not in ("t_s", "jobs_done")]
    print(f"\n{'t (s)':>7}{'jobs':>7}" + "".join(f"{n:>10}" for n in names) + "   (RSS MB, process and children)")
    for s in samples:
        print(f"{s['t_s']:>7}{s['jobs_done']:>7}" + "".join(f"{s[n]:>10}" for n in names))
    warm = samples[min(1, len(samples) - 1)]
    drift = {n: round(samples[-1][n] / warm[n] - 1, 3) for n in names}
    print(
        f"\nfailed jobs: {failed}; growth since the first sample after warm-up: {drift} "
        f"(flat within 10%: {all(abs(v) <= 0.10 for v in drift.values())})"
    )
    Path("out").mkdir(exist_ok=True)
    Path("out/soak.json").write_text(json.dumps({"samples": samples, "growth": drift, "failed": failed}, indent=2))


if __name__ == "__main__":
    main()
