"""`make bench`: the bare in-process pipeline against the queued services, in one run.

1. bare: `roadsigns analyze`'s code path (detector + OCR in one process), photo after photo;
2. queued: the same photos through gateway, Redis, the three pools and Postgres, submitted
   all at once (the saturating case), with throughput, end-to-end percentiles and each
   stage's share; the ratio queued/bare;
3. the gateway's accept rate for POST /jobs under wrk, workers stopped so that only the
   gateway is measured, with the CPU time each party spent per accepted request (gateway,
   Postgres, Redis, wrk itself): on a 2-core machine that split is what bounds the rate;
4. a video (a 20 s zoom over a sample photo, encoded here): frames analysed a second, bare
   (`roadsigns analyze`'s code) and queued (its segments through the detector pool, then the
   reader and the tracker), on the device the detector picks (a GPU when there is one);
5. peak resident memory of every service's process tree.

Prints a table and writes the JSON report to out/bench.json. Needs local Postgres and Redis.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil

from roadsigns.cli.pipeline import Pipeline
from roadsigns.shared.settings import Settings
from tests.stack import Stack, wait_until

PHOTOS = sorted(Path("tests/data/photos").glob("*.jpg"))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class MemorySampler(threading.Thread):
    """Peak RSS (MB) of each named process tree, sampled every 0.5 s."""

    def __init__(self, pids: dict[str, int]) -> None:
        super().__init__(daemon=True)
        self.pids, self.peak = pids, dict.fromkeys(pids, 0.0)
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            for name, pid in self.pids.items():
                try:
                    root = psutil.Process(pid)
                    rss = sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
                    self.peak[name] = max(self.peak[name], rss / 2**20)
                except psutil.Error:
                    pass
            time.sleep(0.5)


def bare(photos: list[bytes]) -> dict:
    pipeline = Pipeline(Settings())
    for _ in range(2):  # warm: a shape's second photo compiles its graph (roadsigns.detector.backends.openvino)
        pipeline.analyze(photos[0])
    cpu0 = _cpu_seconds([psutil.Process()])
    t0 = time.perf_counter()
    latencies = []
    for data in photos:
        t = time.perf_counter()
        pipeline.analyze(data)
        latencies.append((time.perf_counter() - t) * 1000)
    seconds = time.perf_counter() - t0
    return {
        "cpu_ms_per_photo": round((_cpu_seconds([psutil.Process()]) - cpu0) * 1000 / len(photos), 1),
        "images": len(photos),
        "seconds": round(seconds, 2),
        "images_per_s": round(len(photos) / seconds, 3),
        "p50_ms": round(pct(latencies, 0.5), 1),
        "p95_ms": round(pct(latencies, 0.95), 1),
    }


def write_bench_video(folder: Path, seconds: float = 20.0, fps: float = 10.0) -> Path:
    """A dashcam-like clip: the zoom over a sample photo the video tests use, forwards then back."""
    from tests.test_video import write_video

    return write_video(folder / "drive.mp4", PHOTOS[1], seconds=seconds, fps=fps)


def video_bare(video: Path) -> dict:
    pipeline = Pipeline(Settings())
    pipeline.analyze_video(video, min_track_frames=2)  # warm: the graphs compiled for the frame's shapes
    t0 = time.perf_counter()
    job = pipeline.analyze_video(video)
    seconds = time.perf_counter() - t0
    return {
        "device": f"{pipeline.detector.backend} on {pipeline.detector.device}",
        "frames": job["frames_analysed"],
        "tracks": len(job["tracks"]),
        "seconds": round(seconds, 2),
        "frames_per_s": round(job["frames_analysed"] / seconds, 2),
    }


def video_queued(stack: Stack, video: Path) -> dict:
    """One video job through the stack, submit to done, with the stack's detector pool."""
    with httpx.Client(base_url=stack.gateway_url, timeout=60) as client:
        t0 = time.perf_counter()
        with video.open("rb") as f:
            job_id = client.post("/jobs", files={"file": ("drive.mp4", f, "video/mp4")}).json()["id"]
        job = client.get(f"/jobs/{job_id}").json()
        while job["status"] not in ("done", "failed"):
            time.sleep(0.2)
            job = client.get(f"/jobs/{job_id}").json()
        seconds = time.perf_counter() - t0
    if job["status"] != "done":
        return {"error": job.get("error")}
    return {
        "frames": job["frames_analysed"],
        "tracks": len(job["tracks"]),
        "segment_s": Settings().video_segment_s,
        "seconds": round(seconds, 2),
        "frames_per_s": round(job["frames_analysed"] / seconds, 2),
    }


def one_at_a_time(stack: Stack, photos: list[bytes], n: int) -> dict:
    """End-to-end latency of a single job on an idle system: submit, wait, repeat."""
    totals, wall = [], []
    with httpx.Client(base_url=stack.gateway_url, timeout=60) as client:
        for i in range(n):
            t0 = time.perf_counter()
            job_id = client.post("/jobs", files={"file": ("p.jpg", photos[i % len(photos)], "image/jpeg")}).json()["id"]
            job = client.get(f"/jobs/{job_id}").json()
            while job["status"] not in ("done", "failed"):
                time.sleep(0.02)
                job = client.get(f"/jobs/{job_id}").json()
            wall.append((time.perf_counter() - t0) * 1000)
            totals.append(job["timings_ms"]["total_ms"])
    return {
        "jobs": n,
        "median_total_ms": round(statistics.median(totals), 1),
        "median_client_ms": round(statistics.median(wall), 1),
    }


def ended(client: httpx.Client) -> int:
    """How many of the tenant's jobs are done or failed: two counts, no job bodies, so that the
    benchmark's polling costs the gateway next to nothing (a 100-job list every 0.2 s was a
    tenth of its CPU per photo)."""
    return sum(client.get("/jobs", params={"status": s, "limit": 1}).json()["total"] for s in ("done", "failed"))


def all_jobs(client: httpx.Client) -> list[dict]:
    """The tenant's jobs, newest first, page after page."""
    jobs: list[dict] = []
    while True:
        page = client.get("/jobs", params={"limit": 100, "offset": len(jobs)}).json()["items"]
        jobs += page
        if len(page) < 100:
            return jobs


def queued(stack: Stack, photos: list[bytes]) -> dict:
    with httpx.Client(base_url=stack.gateway_url, timeout=60) as client:
        # Warm every pool with two jobs first, as the bare run was warmed.
        for _ in range(2):
            warm = client.post("/jobs", files={"file": ("w.jpg", photos[0], "image/jpeg")}).json()["id"]
            wait_until(lambda job=warm: client.get(f"/jobs/{job}").json()["status"] == "done", 300, "warm-up job")
        parties = {name: _tree(proc.pid) for name, proc in stack.procs.items()}
        parties.update(postgres=_named("postgres"), redis=_named("redis-server"), client=lambda: [psutil.Process()])
        meter = CpuMeter(parties)
        meter.start()
        t0 = time.perf_counter()
        ended_before = ended(client)
        ids = [client.post("/jobs", files={"file": ("p.jpg", d, "image/jpeg")}).json()["id"] for d in photos]
        while ended(client) - ended_before < len(ids):
            time.sleep(0.2)
        seconds = time.perf_counter() - t0
        cpu_ms = {name: seconds * 1000 / len(ids) for name, seconds in meter.stop().items()}
        jobs = [job for job in all_jobs(client) if job["id"] in set(ids)]
    totals = [j["timings_ms"]["total_ms"] for j in jobs if j["status"] == "done"]
    stages = ("queue_wait_ms", "detect_ms", "classify_ms", "ocr_ms")
    stage_means = {
        s: statistics.mean(j["timings_ms"].get(s, 0.0) for j in jobs if j["status"] == "done") for s in stages
    }
    mean_total = statistics.mean(totals)
    return {
        "images": len(ids),
        "failed": sum(j["status"] == "failed" for j in jobs),
        "seconds": round(seconds, 2),
        "images_per_s": round(len(ids) / seconds, 3),
        "p50_ms": round(pct(totals, 0.5), 1),
        "p95_ms": round(pct(totals, 0.95), 1),
        "p99_ms": round(pct(totals, 0.99), 1),
        "stage_share": {s: round(v / mean_total, 3) for s, v in stage_means.items()},
        # Where the cores went, per photo: the detector's share is the useful work.
        "cpu_ms_per_photo": {name: round(v, 1) for name, v in cpu_ms.items()},
    }


def _cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for proc in procs:
        try:
            t = proc.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def _tree(pid: int) -> Callable[[], list[psutil.Process]]:
    def procs() -> list[psutil.Process]:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]

    return procs


def _named(*prefixes: str) -> Callable[[], list[psutil.Process]]:
    def procs() -> list[psutil.Process]:
        return [p for p in psutil.process_iter(["name"]) if (p.info["name"] or "").startswith(prefixes)]

    return procs


class CpuMeter:
    """CPU seconds each party spent between `start` and `stop`.

    A party is a function that lists its processes *now*: they are listed again at the end, so
    a process born during the run counts from zero. PostgreSQL forks a backend for each new
    connection, and a gateway's pool opens most of its connections under load: a list taken
    before the run missed them, and the server's cost read as a few hundredths of a ms.
    (A process that ends during the run is not counted; none of the parties' do in these runs.)
    """

    def __init__(self, parties: dict[str, Callable[[], list[psutil.Process]]]) -> None:
        self.parties = parties
        self.before: dict[str, dict[int, float]] = {}

    def _read(self) -> dict[str, dict[int, float]]:
        return {name: {p.pid: _cpu_seconds([p]) for p in procs()} for name, procs in self.parties.items()}

    def start(self) -> None:
        self.before = self._read()

    def stop(self) -> dict[str, float]:
        after = self._read()
        return {
            name: sum(cpu - self.before[name].get(pid, 0.0) for pid, cpu in after[name].items())
            for name in self.parties
        }


def accept_rate(stack: Stack, seconds: int, connections: int, photo: Path = PHOTOS[3]) -> dict:
    if shutil.which("wrk") is None:
        return {"skipped": "wrk is not installed (apt-get install wrk)"}
    parties = {
        "gateway": _tree(stack.procs["gateway"].pid),
        "postgres": _named("postgres"),  # every backend and the WAL writer: the server's whole cost
        "redis": _named("redis-server"),
    }
    meter = CpuMeter(parties)
    meter.start()
    usage_before = os.times()
    out = subprocess.run(
        [
            "wrk",
            "-t",
            "2",
            "-c",
            str(connections),
            "-d",
            f"{seconds}s",
            "--latency",
            "-s",
            "benchmarks/post_jobs.lua",
            f"{stack.gateway_url}/jobs",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "ROADSIGNS_BENCH_PHOTO": str(photo)},
    )
    usage_after = os.times()
    match = re.search(r"WRK_JSON (\{.*\})", out.stdout)
    if match is None:
        return {"error": out.stdout[-2000:] + out.stderr[-2000:]}
    report = json.loads(match.group(1))
    report["requests_per_s"] = round(report["requests"] / report["seconds"], 1)
    report["connections"] = connections
    spent = meter.stop()
    spent["wrk"] = (usage_after.children_user - usage_before.children_user) + (
        usage_after.children_system - usage_before.children_system
    )
    requests = max(1, report["requests"])
    report["cpu_ms_per_request"] = {name: round(v * 1000 / requests, 2) for name, v in spent.items()}
    total = sum(spent.values()) * 1000 / requests
    report["cpu_ms_per_request"]["total"] = round(total, 2)
    # What these costs allow when every core does nothing else.
    report["cpu_bound_requests_per_s"] = round((os.cpu_count() or 1) * 1000 / total, 1)
    return report


def print_accept(a: dict) -> None:
    if "requests_per_s" not in a:
        print(f"POST /jobs accept rate: {a}")
        return
    print(
        f"POST /jobs accept rate: {a['requests_per_s']} req/s at {a['connections']} connections, "
        f"p50 {a['p50_ms']} ms, p99 {a['p99_ms']} ms, errors (connection, timeout or non-2xx) {a['errors']}"
    )
    print(
        f"CPU ms per accepted request: {a['cpu_ms_per_request']}; "
        f"at that cost {os.cpu_count()} cores allow {a['cpu_bound_requests_per_s']} req/s"
    )


def accept_only(args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="roadsigns-bench-"))
    stack = Stack.create(root)
    try:
        stack.start_gateway(workers=args.gateway_workers)
        print_accept(accept_rate(stack, args.wrk_seconds, args.wrk_connections, args.accept_photo))
    finally:
        stack.close()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100, help="photos per run (the samples, cycled)")
    parser.add_argument("--wrk-seconds", type=int, default=15)
    parser.add_argument("--wrk-connections", type=int, default=32)
    parser.add_argument("--ocr-concurrency", type=int, default=1)
    parser.add_argument(
        "--gateway-workers", type=int, default=os.cpu_count() or 1, help="uvicorn worker processes (default: cores)"
    )
    parser.add_argument("--accept-only", action="store_true", help="only part 3: the gateway's accept rate")
    parser.add_argument("--accept-photo", type=Path, default=PHOTOS[3], help="the upload wrk repeats")
    args = parser.parse_args()
    if args.accept_only:
        accept_only(args)
        return
    photos = [PHOTOS[i % len(PHOTOS)].read_bytes() for i in range(args.images)]
    report: dict = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        }
    }
    report["bare"] = bare(photos)
    root = Path(tempfile.mkdtemp(prefix="roadsigns-bench-"))
    video = write_bench_video(root)
    report["video"] = {"bare": video_bare(video)}
    stack = Stack.create(root)
    try:
        for pool, n in (("detector", 1), ("ocr", args.ocr_concurrency), ("tracker", 1)):
            stack.start_worker(pool, n)
        stack.start_gateway(workers=args.gateway_workers)
        stack.wait_workers_ready(["detector", "ocr", "tracker"])
        sampler = MemorySampler({name: proc.pid for name, proc in stack.procs.items()})
        sampler.start()
        report["queued"] = queued(stack, photos)
        report["single_job"] = one_at_a_time(stack, photos, 7)
        report["queued_over_bare"] = round(report["queued"]["images_per_s"] / report["bare"]["images_per_s"], 3)
        report["video"]["queued"] = video_queued(stack, video)
        for pool in ("detector", "ocr", "tracker"):
            stack.stop(pool)  # measure the gateway alone; accepted jobs wait in Redis
        report["accept"] = accept_rate(stack, args.wrk_seconds, args.wrk_connections, args.accept_photo)
        sampler.halt.set()
        report["peak_rss_mb"] = {k: round(v, 1) for k, v in sampler.peak.items()}
    finally:
        stack.close()
        shutil.rmtree(root, ignore_errors=True)
    Path("out").mkdir(exist_ok=True)
    Path("out/bench.json").write_text(json.dumps(report, indent=2) + "\n")
    b, q, a = report["bare"], report["queued"], report["accept"]
    print(f"machine: {report['machine']}")
    print(f"{'':24}{'img/s':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}")
    print(f"{'bare pipeline':24}{b['images_per_s']:>8}{b['p50_ms']:>9}{b['p95_ms']:>9}{'':>9}")
    print(f"{'queued services':24}{q['images_per_s']:>8}{q['p50_ms']:>9}{q['p95_ms']:>9}{q['p99_ms']:>9}")
    print(f"queued/bare throughput: {report['queued_over_bare']}; stage share of end-to-end: {q['stage_share']}")
    print(f"queued, CPU ms per photo by process: {q['cpu_ms_per_photo']} (bare: {b['cpu_ms_per_photo']})")
    print(
        f"one job at a time (median of {report['single_job']['jobs']}): {report['single_job']['median_total_ms']} ms "
        f"recorded, {report['single_job']['median_client_ms']} ms seen by the client polling every 20 ms"
    )
    print_accept(a)
    v = report["video"]
    print(f"video, frames analysed a second ({v['bare']['device']}): bare {v['bare']}; queued {v['queued']}")
    print(f"peak RSS MB: {report['peak_rss_mb']}")
    print("report: out/bench.json")


if __name__ == "__main__":
    main()
