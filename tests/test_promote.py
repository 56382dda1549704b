"""Gated promotion and hot swap, with real processes: an MLflow server holding the registry,
detector workers serving the alias `production`, the gateway, OCR and tracker workers.

Versions are made fast, without training: the shipped weights (version 1), the same networks
in new files (an ONNX metadata entry added: the same answers, other bytes), a classifier whose
output classes are shifted by one (worse on every photo) and garbage bytes.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import numpy as np
import onnx
import pytest
from mlflow import MlflowClient
from onnx import numpy_helper

from roadsigns.cli.groundtruth import read_gt
from roadsigns.shared.weights import shipped
from tests.conftest import PHOTOS, wait_for_job
from tests.stack import BIN, Stack, wait_until

ALIAS = "production"
POLL_S = 1.0
PARTS = {"detector": "roadsigns-detector", "classifier": "roadsigns-classifier"}


def shipped_files(part: str) -> dict[str, bytes]:
    return {f"{part}.{ext}": shipped("roadsigns.detector", f"{part}.{ext}").read_bytes() for ext in ("onnx", "pt")}


def relabelled(onnx_bytes: bytes, copy: str) -> bytes:
    """The same graph with a metadata entry added: it answers exactly as before, from a file of its own."""
    model = onnx.load_from_string(onnx_bytes)
    onnx.helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props}, "roadsigns.copy": copy})
    return model.SerializeToString()


def shifted_classifier(onnx_bytes: bytes) -> bytes:
    """The classifier with its output classes rolled by one: every answer is the next class."""
    model = onnx.load_from_string(onnx_bytes)
    for init in model.graph.initializer:
        values = numpy_helper.to_array(init)
        if values.shape[:1] == (43,):
            init.CopyFrom(numpy_helper.from_array(np.roll(values, 1, axis=0), init.name))
    return model.SerializeToString()


def register(client: MlflowClient, root: Path, label: str, files: dict[str, dict[str, bytes]]) -> dict[str, str]:
    """Log `files` ({part: {filename: bytes}}) as a run's artifacts, as training does, and register
    each part's folder as a new version; returns part -> version number."""
    experiment = client.get_experiment_by_name("test-models")
    experiment_id = experiment.experiment_id if experiment else client.create_experiment("test-models")
    run = client.create_run(experiment_id, run_name=label)
    versions = {}
    for part, named in files.items():
        folder = root / label / part
        folder.mkdir(parents=True)
        for filename, data in named.items():
            (folder / filename).write_bytes(data)
        client.log_artifacts(run.info.run_id, str(folder), part)
        if not client.search_registered_models(f"name = '{PARTS[part]}'"):
            client.create_registered_model(PARTS[part])
        mv = client.create_model_version(PARTS[part], f"{run.info.artifact_uri}/{part}", run_id=run.info.run_id)
        versions[part] = str(mv.version)
    client.set_terminated(run.info.run_id)
    return versions


def point(client: MlflowClient, alias: str, versions: dict[str, str]) -> None:
    for part, version in versions.items():
        client.set_registered_model_alias(PARTS[part], alias, version)


def crops_npz(path: Path) -> Path:
    """The sample photos' signs as 32x32 RGB crops with their classes: `roadsigns evaluate classification`'s input."""
    images, labels = [], []
    for name, boxes in read_gt(PHOTOS / "gt.txt").items():
        photo = cv2.imread(str(PHOTOS / name))
        for b in boxes:
            m = (b.right - b.left) // 10
            crop = photo[max(0, b.top - m) : b.bottom + m, max(0, b.left - m) : b.right + m]
            images.append(cv2.cvtColor(cv2.resize(crop, (32, 32)), cv2.COLOR_BGR2RGB))
            labels.append(b.class_id)
    np.savez(path, images=np.stack(images), labels=np.array(labels, np.uint8))
    return path


class Registry:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.client = MlflowClient(stack.mlflow_url)
        self.npz = crops_npz(stack.root / "crops.npz")
        self.v1 = register(
            self.client, stack.root / "models", "v1", {p: shipped_files(p) for p in PARTS}
        )  # the shipped pair
        point(self.client, ALIAS, self.v1)

    def promote(self, candidate: str, *extra: str) -> tuple[int, dict, str]:
        """`roadsigns promote` as a user runs it, on the sample photos: exit status, its JSON, stderr."""
        out = subprocess.run(
            [str(BIN / "roadsigns"), "promote", "--alias", ALIAS, "--candidate", candidate, "--quiet"]
            + ["--images", str(PHOTOS), "--gt", str(PHOTOS / "gt.txt"), "--npz", str(self.npz), *extra],
            env=self.stack.env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        return out.returncode, json.loads(out.stdout) if out.stdout.strip() else {}, out.stderr

    def serving(self) -> dict[str, str]:
        return {p: str(self.client.get_model_version_by_alias(n, ALIAS).version) for p, n in PARTS.items()}


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A stack with its MLflow server; version 1 (the shipped files) registered as `production`."""
    stack = Stack.create(tmp_path_factory.mktemp("promote"), ROADSIGNS_BACKEND="openvino")
    try:
        stack.start_mlflow()
        yield Registry(stack)
    finally:
        stack.close()


def test_worse_candidate_is_refused_and_logged(registry: Registry) -> None:
    worse = register(
        registry.client,
        registry.stack.root / "models",
        "worse",
        {"classifier": {"classifier.onnx": shifted_classifier(shipped_files("classifier")["classifier.onnx"])}},
    )
    point(registry.client, "worse", worse)
    status, result, stderr = registry.promote("worse")
    assert status == 1, stderr[-2000:]
    assert result["decision"] == "refused" and not result["forced"]
    # A candidate of the classifier alone is judged paired with the serving detector.
    assert result["versions"]["candidate"] == {"detector": registry.v1["detector"], "classifier": worse["classifier"]}
    current, candidate = result["metrics"]["current"], result["metrics"]["candidate"]
    assert current["map50"] > 0.5 and current["accuracy"] > 0.5
    assert candidate["accuracy"] < current["accuracy"] - 0.5
    assert any(r.startswith("map50 fell") for r in result["reasons"])
    assert registry.serving() == registry.v1  # the alias did not move
    run = registry.client.get_run(result["mlflow_run_id"])
    assert run.data.tags["roadsigns.decision"] == "refused" and run.data.tags["roadsigns.forced"] == "false"
    assert run.data.metrics["current.map50"] == pytest.approx(current["map50"])
    assert run.data.metrics["candidate.accuracy"] == pytest.approx(candidate["accuracy"])
    assert run.data.params["candidate.classifier"] == worse["classifier"]


def test_candidate_that_does_not_load_is_refused(registry: Registry) -> None:
    broken = register(
        registry.client,
        registry.stack.root / "models",
        "broken-gate",
        {"detector": {"detector.onnx": b"not a model" * 100, "detector.pt": b"not a model" * 100}},
    )
    point(registry.client, "broken", broken)
    status, result, stderr = registry.promote("broken")
    assert status == 1, stderr[-2000:]
    assert result["decision"] == "refused"
    assert result["reasons"][0].startswith("the candidate does not load"), result["reasons"]
    assert registry.serving() == registry.v1

    # A broken production leaves nothing to compare against: refused, and --force repairs it.
    point(registry.client, ALIAS, broken)
    point(registry.client, "shipped", registry.v1)
    status, result, stderr = registry.promote("shipped")
    assert status == 1, stderr[-2000:]
    [reason] = result["reasons"]
    assert reason.startswith("the pair 'production' names now does not load"), reason
    assert "candidate" in result["metrics"] and "current" not in result["metrics"]
    status, result, stderr = registry.promote("shipped", "--force")
    assert status == 0 and result["decision"] == "promoted" and result["forced"], stderr[-2000:]
    assert registry.serving() == registry.v1


def test_equal_candidate_is_promoted_and_unchanged_after(registry: Registry) -> None:
    same = register(
        registry.client,
        registry.stack.root / "models",
        "same",
        {p: {f"{p}.onnx": relabelled(shipped_files(p)[f"{p}.onnx"], "same")} for p in PARTS},
    )
    point(registry.client, "same", same)
    status, result, stderr = registry.promote("same")
    assert status == 0, stderr[-2000:]
    assert result["decision"] == "promoted", result
    assert result["metrics"]["candidate"]["map50"] == pytest.approx(result["metrics"]["current"]["map50"])
    assert registry.serving() == same
    status, result, _ = registry.promote("same")  # nothing to do: not evaluated again
    assert status == 0 and result["decision"] == "unchanged"
    point(registry.client, ALIAS, registry.v1)


def test_force_moves_a_refused_candidate_and_says_so(registry: Registry) -> None:
    status, result, stderr = registry.promote("worse", "--force")
    assert status == 0, stderr[-2000:]
    assert result["decision"] == "promoted" and result["forced"] and result["reasons"]
    run = registry.client.get_run(result["mlflow_run_id"])
    assert run.data.tags["roadsigns.forced"] == "true" and run.data.params["forced"] == "True"
    assert registry.serving()["classifier"] == result["versions"]["candidate"]["classifier"]
    point(registry.client, ALIAS, registry.v1)


# --- hot swap: running detector workers follow `production` -------------------------------------

CHILDREN = 2  # every child loads and swaps on its own


@pytest.fixture(scope="module")
def served(registry: Registry) -> Iterator[Registry]:
    """Workers and the gateway on the registry's stack; the detector pool serves `production`, polled every second."""
    stack = registry.stack
    point(registry.client, ALIAS, registry.v1)
    detector_env = {"ROADSIGNS_MODEL_REGISTRY_ALIAS": ALIAS, "ROADSIGNS_MODEL_POLL_S": str(POLL_S)}
    stack.start_worker("detector", CHILDREN, extra_env=detector_env)
    for pool in ("ocr", "tracker"):
        stack.start_worker(pool, 1)
    stack.start_gateway()
    stack.wait_workers_ready(["detector", "ocr", "tracker"])
    wait_until(lambda: stack.log("detector").count("models loaded") >= CHILDREN, 120, "both detector children")
    yield registry


def submit(client: httpx.Client, name: str = "00330.jpg") -> dict:
    made = client.post("/jobs", files={"file": (name, (PHOTOS / name).read_bytes(), "image/jpeg")})
    assert made.status_code == 202, made.text
    return wait_for_job(client, made.json()["id"])


def detector_version(job: dict) -> str:
    return job["model_versions"]["detector"]


def detector_log(stack: Stack) -> str:
    return (stack.root / "detector.log").read_text(errors="replace")


def metric(stack: Stack, name: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{stack.metrics_ports['detector']}/metrics", timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def test_jobs_run_on_version_1(served: Registry) -> None:
    with httpx.Client(base_url=served.stack.gateway_url, timeout=30) as client:
        job = submit(client)
    assert job["status"] == "done" and job["signs"], job
    assert detector_version(job) == f"roadsigns-detector/{served.v1['detector']}@{ALIAS}"
    assert job["model_versions"]["classifier"] == f"roadsigns-classifier/{served.v1['classifier']}@{ALIAS}"


def test_corrupt_version_is_refused_by_running_workers(served: Registry) -> None:
    stack = served.stack
    corrupt = register(
        served.client,
        stack.root / "models",
        "corrupt",
        {"detector": {"detector.onnx": b"\x00garbage" * 512, "detector.pt": b"\x00garbage" * 512}},
    )
    point(served.client, ALIAS, corrupt)  # past the gate, as a hand in the registry's UI would
    try:
        wait_until(lambda: detector_log(stack).count("refused production") >= CHILDREN, 60, "both children to refuse")
        assert metric(stack, 'roadsigns_model_refused_total{model="detector",reason="load"}') == CHILDREN
        time.sleep(3 * POLL_S)  # refused once, not loaded again on every look
        assert detector_log(stack).count("refused production") == CHILDREN
        with httpx.Client(base_url=stack.gateway_url, timeout=30) as client:
            job = submit(client)
        assert job["status"] == "done", job
        assert detector_version(job) == f"roadsigns-detector/{served.v1['detector']}@{ALIAS}"
    finally:
        point(served.client, ALIAS, served.v1)


def test_promoted_version_is_picked_up_without_a_restart_or_a_failed_job(served: Registry) -> None:
    stack = served.stack
    pids = {name: proc.pid for name, proc in stack.procs.items()}
    v2 = register(
        served.client,
        stack.root / "models",
        "v2",
        {p: {f"{p}.onnx": relabelled(shipped_files(p)[f"{p}.onnx"], "v2")} for p in PARTS},
    )
    point(served.client, "candidate", v2)
    jobs: list[tuple[float, float, dict]] = []  # (submitted at, finished at, job)
    errors: list[BaseException] = []
    stop = threading.Event()

    def keep_busy() -> None:  # one job after another, so a job is in flight in each child when the swap comes
        try:
            with httpx.Client(base_url=stack.gateway_url, timeout=30) as client:
                while not stop.is_set():
                    submitted = time.monotonic()
                    job = submit(client)
                    jobs.append((submitted, time.monotonic(), job))
        except BaseException as exc:  # noqa: BLE001 - reported by the test, not lost in the thread
            errors.append(exc)

    def on_v2(job: dict) -> bool:
        return detector_version(job) == f"roadsigns-detector/{v2['detector']}@{ALIAS}"

    threads = [threading.Thread(target=keep_busy) for _ in range(CHILDREN)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: len(jobs) >= 2, 120, "jobs on version 1")
        status, result, stderr = served.promote("candidate")
        promoted_at = time.monotonic()
        assert status == 0 and result["decision"] == "promoted", (result, stderr[-2000:])
        wait_until(lambda: detector_log(stack).count("now serving") >= CHILDREN, 60, "both children to swap")
        swapped_after = time.monotonic() - promoted_at
        all_swapped = time.monotonic()
        wait_until(lambda: sum(s > all_swapped for s, _, _ in jobs) >= 2 * CHILDREN, 180, "jobs after the swap")
    finally:
        stop.set()
        for t in threads:
            t.join(300)
    assert not errors, errors
    first_v2 = min(f for _, f, j in jobs if on_v2(j)) - promoted_at
    print(f"\nswap: both children serve v2 {swapped_after:.1f} s after promote returned; first v2 job {first_v2:.1f} s")
    assert swapped_after < POLL_S + 45  # the poll, a download and a load beside the serving pair
    assert all(j["status"] == "done" for _, _, j in jobs), [j for _, _, j in jobs if j["status"] != "done"]
    v1 = f"roadsigns-detector/{served.v1['detector']}@{ALIAS}"
    assert {detector_version(j) for _, _, j in jobs} == {v1, f"roadsigns-detector/{v2['detector']}@{ALIAS}"}
    later = [j for s, _, j in jobs if s > all_swapped]  # submitted after every child swapped
    assert len(later) >= 2 * CHILDREN and all(on_v2(j) for j in later)
    assert metric(stack, 'roadsigns_model_swaps_total{model="detector"}') == CHILDREN
    assert {name: proc.pid for name, proc in stack.procs.items()} == pids  # no restart
    assert all(proc.poll() is None for proc in stack.procs.values())


def test_smoke_test_passes_the_shipped_pair_and_refuses_one_that_finds_nothing() -> None:
    from roadsigns.detector.model import SignDetector
    from roadsigns.detector.serving import SmokeTestFailed, smoke_test

    detector = SignDetector(backend="openvino")
    smoke_test(detector)
    detector.localiser = lambda blob: np.zeros((1, 5, 2100), np.float32)  # a localiser that proposes nothing
    with pytest.raises(SmokeTestFailed, match="no sign found"):
        smoke_test(detector)


def test_promote_says_what_is_missing(tmp_path: Path) -> None:
    env = {"PATH": str(BIN), "HOME": str(tmp_path), "MLFLOW_DISABLE_TELEMETRY": "true"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "roadsigns"), "promote", "--alias", ALIAS, *args], env=env, capture_output=True, text=True
        )

    out = run()
    assert out.returncode == 2 and "no registry" in out.stderr
    out = run("--tracking-uri", f"sqlite:///{tmp_path}/m.db", "--images", str(PHOTOS))
    assert out.returncode == 2 and "--images and --gt go together" in out.stderr
    out = run("--tracking-uri", f"sqlite:///{tmp_path}/m.db", "--images", str(tmp_path / "none"), "--gt", "gt.txt")
    assert out.returncode == 2 and "does not exist" in out.stderr
