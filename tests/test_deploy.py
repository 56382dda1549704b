"""The deployment files, checked offline (no cluster, no Docker engine): deploy/check.sh, and the
chart's promises rendered and read back: the detector pinned to GPU nodes, each worker pool scaled
on its own Redis list, and values that would break either refused.

Tools come from `bash deploy/install-tools.sh` (into .tools/); without them these tests skip,
except in CI, where they fail.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TOOLS = Path(os.environ.get("TOOLS_DIR", ROOT / ".tools")).resolve()
HELM = TOOLS / "bin" / "helm"
CHART = ROOT / "deploy" / "helm"
POOLS = {"detector": "detect", "ocr": "ocr", "tracker": "track", "webhook": "webhook"}


def need_tools() -> None:
    if HELM.exists() and (TOOLS / "bin" / "promtool").exists():
        return
    message = f"deployment tools missing in {TOOLS}: run `bash deploy/install-tools.sh`"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def helm_template(*args: str) -> subprocess.CompletedProcess[str]:
    need_tools()
    return subprocess.run(
        [str(HELM), "template", "roadsigns", str(CHART), "--namespace", "roadsigns", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def render(*args: str) -> list[dict]:
    result = helm_template(*args)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def find(docs: list[dict], kind: str, name: str) -> dict:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind} {name}: found {len(matches)}"
    return matches[0]


def container(deployment: dict) -> dict:
    return deployment["spec"]["template"]["spec"]["containers"][0]


def test_every_offline_check_passes() -> None:
    need_tools()
    result = subprocess.run(["bash", "deploy/check.sh"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAIL" not in result.stdout


@pytest.mark.parametrize("env", ["default", "staging", "production"])
def test_detector_is_pinned_to_gpu_nodes(env: str) -> None:
    args = [] if env == "default" else ["-f", str(CHART / f"values-{env}.yaml")]
    docs = render(*args)
    pod = find(docs, "Deployment", "roadsigns-detector")["spec"]["template"]["spec"]
    assert int(pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]) >= 1
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert any(t["key"] == "nvidia.com/gpu" and t["effect"] == "NoSchedule" for t in pod["tolerations"])

    ocr = find(docs, "Deployment", "roadsigns-ocr")["spec"]["template"]["spec"]
    resources = ocr["containers"][0]["resources"]
    assert "nvidia.com/gpu" not in {**resources.get("limits", {}), **resources.get("requests", {})}
    term = ocr["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
    assert {"key": "nvidia.com/gpu.present", "operator": "NotIn", "values": ["true"]} in term["matchExpressions"]
    assert "tolerations" not in ocr


@pytest.mark.parametrize("env", ["default", "staging", "production"])
def test_each_pool_scales_on_its_own_queue(env: str) -> None:
    args = [] if env == "default" else ["-f", str(CHART / f"values-{env}.yaml")]
    docs = render(*args)
    scaled = [d for d in docs if d["kind"] == "ScaledObject"]
    assert len(scaled) == len(POOLS)
    for pool, queue in POOLS.items():
        so = find(docs, "ScaledObject", f"roadsigns-{pool}")
        deployment = find(docs, "Deployment", f"roadsigns-{pool}")
        assert so["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
        (trigger,) = so["spec"]["triggers"]
        assert trigger["type"] == "redis"
        assert trigger["metadata"]["listName"] == queue
        assert trigger["authenticationRef"]["name"] == "roadsigns-redis"
        args = container(deployment)["args"]
        assert args[args.index("-Q") + 1] == queue, "the worker consumes the list its scaler watches"
        assert "replicas" not in deployment["spec"], "KEDA owns the replica count"
        # Long enough for Celery's warm shutdown to finish a running task (time limit 300 s).
        assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > 300
    find(docs, "TriggerAuthentication", "roadsigns-redis")
    hpa = find(docs, "HorizontalPodAutoscaler", "roadsigns-gateway")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "roadsigns-gateway"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (["--set", "detector.resources.limits.nvidia\\.com/gpu=null"], "nvidia.com/gpu >= 1"),
        (["--set", "detector.resources.limits.nvidia\\.com/gpu=0"], "nvidia.com/gpu >= 1"),
        (["--set", "detector.nodeSelector=null"], "detector.nodeSelector must not be empty"),
        (["--set-json", "detector.tolerations=[]"], "must tolerate the nvidia.com/gpu taint"),
        (["--set", "ocr.resources.limits.nvidia\\.com/gpu=1"], "OCR pool runs on CPU nodes"),
        (["--set", "ocr.queue=detect"], 'the ocr pool must consume and scale on its own queue "ocr"'),
        (["--set", "tracker.queue=ocr"], 'its own queue "track"'),
        (["--set", "detector.terminationGracePeriodSeconds=30"], "so a running task can finish"),
        (["--set", "ocr.autoscaling.minReplicas=9"], "minReplicas must not exceed maxReplicas"),
        (["--set", "ocr.autoscaling.listLength=0"], "listLength"),
        (["--set", "apiKeysRequired=false"], "apiKeysRequired must be true when environment is production"),
        (
            ["-f", str(CHART / "values-staging.yaml"), "--set", "apiKeysRequired=false"],
            "apiKeysRequired must be true when environment is staging",
        ),
    ],
)
def test_values_that_break_gpu_pinning_or_autoscaling_are_refused(override: list[str], message: str) -> None:
    result = helm_template(*override)
    assert result.returncode != 0, f"helm rendered {override} without complaint"
    assert message in result.stderr, result.stderr


def test_migration_hook_monitoring_and_test_pod() -> None:
    docs = render()
    job = find(docs, "Job", "roadsigns-migrate")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert container({"spec": job["spec"]})["args"][0] == "roadsigns-migrate"

    rule = find(docs, "PrometheusRule", "roadsigns")
    alerts = {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r}
    assert {
        "RoadsignsApiLatencyHigh",
        "RoadsignsApiErrorRateHigh",
        "RoadsignsContainerCpuHigh",
        "RoadsignsContainerMemoryHigh",
        "RoadsignsQueueBacklogGrowing",
        "RoadsignsStageStalled",
    } <= alerts
    # The rule annotations keep their Prometheus templates: Helm must not have evaluated them.
    assert any(
        "{{ $labels.queue }}" in r.get("annotations", {}).get("summary", "") for r in rule["spec"]["groups"][1]["rules"]
    )

    monitor = find(docs, "ServiceMonitor", "roadsigns")
    assert {e["port"] for e in monitor["spec"]["endpoints"]} == {"metrics", "flower"}
    # The gateway's /metrics is on its metrics port, which neither its Service nor the ingress reaches.
    assert "roadsigns.io/metrics" not in find(docs, "Service", "roadsigns-gateway")["metadata"]["labels"]
    assert [p["name"] for p in find(docs, "Service", "roadsigns-gateway")["spec"]["ports"]] == ["http"]
    for pool in [*POOLS, "gateway"]:
        service = find(docs, "Service", f"roadsigns-{pool}-metrics")
        assert service["metadata"]["labels"]["roadsigns.io/metrics"] == "true"

    dashboards = find(docs, "ConfigMap", "roadsigns-dashboards")
    assert dashboards["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboards["data"]["roadsigns.json"])["uid"] == "roadsigns-pipeline"

    test_pod = find(docs, "Pod", "roadsigns-test-connection")
    assert test_pod["metadata"]["annotations"]["helm.sh/hook"] == "test"


def test_no_password_in_rendered_manifests() -> None:
    docs = render("-f", str(CHART / "values-production.yaml"))
    for deployment in (d for d in docs if d["kind"] == "Deployment"):
        env = {e["name"]: e for e in container(deployment).get("env", [])}
        assert "secretKeyRef" in env["DATABASE_PASSWORD"]["valueFrom"]
        assert "$(DATABASE_PASSWORD)" in env["ROADSIGNS_DATABASE_URL"]["value"]
    assert not [d for d in docs if d["kind"] == "Secret"], "secrets live outside the chart"


def test_gateway_image_carries_no_torch() -> None:
    dockerfile = (ROOT / "services" / "gateway" / "Dockerfile").read_text()
    installs = [line for line in dockerfile.splitlines() if "pip install" in line]
    assert installs == ["RUN pip install ./shared ./services/gateway \\"]
    assert "find_spec('torch') is not None" in dockerfile, "the build fails if a dependency drags torch in"
    for service in ("gateway", "detector", "ocr", "tracker"):
        text = (ROOT / "services" / service / "Dockerfile").read_text()
        assert "USER 10001" in text and "HEALTHCHECK" in text, service


def test_compose_requires_secrets_from_the_environment() -> None:
    need_tools()
    env = {k: v for k, v in os.environ.items() if k not in ("POSTGRES_PASSWORD", "FLOWER_BASIC_AUTH")}
    result = subprocess.run(
        [str(TOOLS / "bin" / "docker-compose"), "-f", "docker-compose.yml", "config", "-q"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "POSTGRES_PASSWORD" in result.stderr


@pytest.mark.parametrize("env", ["default", "staging", "production"])
def test_the_gateway_never_starts_without_api_keys(env: str) -> None:
    """The Secret's api-keys key is not optional in any shipped environment."""
    docs = render(*([] if env == "default" else ["-f", str(CHART / f"values-{env}.yaml")]))
    gateway = container(find(docs, "Deployment", "roadsigns-gateway"))
    for name in ("ROADSIGNS_API_KEYS", "ROADSIGNS_LINK_SECRET"):  # the link secret signs image links
        entry = next(e for e in gateway["env"] if e["name"] == name)
        assert entry["valueFrom"]["secretKeyRef"]["optional"] is False, name


def test_network_policies_deny_by_default_and_open_only_the_backends() -> None:
    """Default deny in and out for every pod of the release; egress on the DNS, Redis, Postgres and
    MLflow ports only, except the webhook pool's, which reaches public addresses and nothing private."""
    docs = render("--set", "mlflow.trackingUri=http://mlflow.mlops:5000")
    policies = {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "NetworkPolicy"}
    release = {"app.kubernetes.io/name": "roadsigns", "app.kubernetes.io/instance": "roadsigns"}
    deny = policies["roadsigns-default-deny"]
    assert deny["podSelector"]["matchLabels"] == release
    assert sorted(deny["policyTypes"]) == ["Egress", "Ingress"] and "ingress" not in deny and "egress" not in deny
    # Every Deployment's pods are selected by the default deny.
    for d in docs:
        if d["kind"] == "Deployment":
            assert release.items() <= d["spec"]["template"]["metadata"]["labels"].items(), d["metadata"]["name"]

    open_ports: set[int] = set()
    for name, spec in policies.items():
        component = spec["podSelector"]["matchLabels"].get("app.kubernetes.io/component")
        for rule in spec.get("egress", []):
            assert rule.get("to"), f"{name}: an egress rule to anywhere"
            if component == "webhook":
                blocks = [peer["ipBlock"] for peer in rule["to"]]
                v4 = next(b for b in blocks if b["cidr"] == "0.0.0.0/0")
                assert {"10.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.168.0.0/16"} <= set(
                    v4["except"]
                )
                continue
            assert rule.get("ports"), f"{name}: egress on every port for {component or 'every pod'}"
            open_ports |= {p["port"] for p in rule["ports"]}
    assert open_ports == {53, 6379, 5432, 5000, 8000}  # 8000: helm test's pod to the gateway only
    test_egress = policies["roadsigns-test-egress"]
    assert test_egress["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "test"
    # Without MLflow, no MLflow port.
    plain = [d["spec"] for d in render() if d["kind"] == "NetworkPolicy"]
    assert 5000 not in {p["port"] for s in plain for r in s.get("egress", []) for p in r.get("ports", [])}


def test_every_container_runs_with_a_read_only_root_and_no_privileges() -> None:
    docs = render("--set", "flower.enabled=true")
    pods = {
        d["metadata"]["name"]: d["spec"] if d["kind"] == "Pod" else d["spec"]["template"]["spec"]
        for d in docs
        if d["kind"] in ("Deployment", "Job", "Pod")
    }
    assert {f"roadsigns-{c}" for c in ("gateway", *POOLS, "beat", "flower", "migrate")} <= set(pods)
    for name, pod in pods.items():
        empty_dirs = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
        for c in pod["containers"]:
            ctx = c["securityContext"]
            assert ctx["readOnlyRootFilesystem"] is True, name
            assert ctx["allowPrivilegeEscalation"] is False, name
            assert ctx["capabilities"]["drop"] == ["ALL"], name
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            assert mounts.get("/tmp") in empty_dirs, f"{name}: no emptyDir on /tmp"
            if name == "roadsigns-detector":  # YOLO_CONFIG_DIR, MPLCONFIGDIR
                assert mounts.get("/home/app/.config") in empty_dirs


def test_compose_runs_our_services_read_only() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    for name in ("gateway", "migrate", "detector", "ocr", "tracker", "webhook", "beat", "flower"):
        service = compose[name]
        assert service.get("read_only") is True, name
        assert any(t.split(":")[0] == "/tmp" for t in service["tmpfs"]), name
        assert service["cap_drop"] == ["ALL"] and "no-new-privileges:true" in service["security_opt"], name
