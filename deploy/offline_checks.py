"""Helpers for deploy/check.sh, run with the tools venv (.tools/venv):

offline_checks.py crds MANIFEST...          validate KEDA and prometheus-operator objects in
                                            rendered manifests against the CRD models, rejecting
                                            unknown fields (kubernetes-validate skips CRDs)
offline_checks.py dashboard-rules JSON...   print a Prometheus rules file holding every panel
                                            expression, for `promtool check rules`
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import yaml

# Grafana's own variables, replaced by plain values promtool can parse.
GRAFANA_VARS = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h", "__range_s": "3600"}


def crd_models() -> dict[tuple[str, str], type]:
    from cloudcoil.models.keda import v1alpha1 as keda
    from cloudcoil.models.prometheus_operator import v1 as prom

    return {
        ("keda.sh/v1alpha1", "ScaledObject"): keda.ScaledObject,
        ("keda.sh/v1alpha1", "ScaledJob"): keda.ScaledJob,
        ("keda.sh/v1alpha1", "TriggerAuthentication"): keda.TriggerAuthentication,
        ("monitoring.coreos.com/v1", "ServiceMonitor"): prom.ServiceMonitor,
        ("monitoring.coreos.com/v1", "PodMonitor"): prom.PodMonitor,
        ("monitoring.coreos.com/v1", "PrometheusRule"): prom.PrometheusRule,
    }


def unknown_fields(given: object, kept: object, path: str = "") -> list[str]:
    """Keys present in the manifest but dropped by the model: fields the CRD does not define."""
    if isinstance(given, dict) and isinstance(kept, dict):
        out = [f"{path}.{k}" for k in given if k not in kept]
        for k in given.keys() & kept.keys():
            out += unknown_fields(given[k], kept[k], f"{path}.{k}")
        return out
    if isinstance(given, list) and isinstance(kept, list):
        return [
            e for i, (g, k) in enumerate(zip(given, kept, strict=False)) for e in unknown_fields(g, k, f"{path}[{i}]")
        ]
    return []


def check_crds(paths: list[str]) -> int:
    models, errors, checked = crd_models(), [], 0
    for path in paths:
        for doc in yaml.safe_load_all(Path(path).read_text()):
            if not doc:
                continue
            key = (doc.get("apiVersion", ""), doc.get("kind", ""))
            where = f"{path}: {key[1]} {doc.get('metadata', {}).get('name')}"
            if key not in models:
                group = key[0].split("/")[0] if "/" in key[0] else ""
                if "." in group and not group.endswith("k8s.io"):  # a CRD this script has no model for
                    errors.append(f"{where}: no CRD model for {key[0]}")
                continue
            try:
                obj = models[key].model_validate(doc)
            except Exception as exc:  # noqa: BLE001 - pydantic's message says what is wrong
                errors.append(f"{where}: {exc}")
                continue
            kept = obj.model_dump(by_alias=True, exclude_unset=True, mode="json")
            errors += [f"{where}: unknown field {f}" for f in unknown_fields(doc, kept)]
            checked += 1
    for e in errors:
        print(e, file=sys.stderr)
    print(f"CRD objects checked: {checked}, errors: {len(errors)}")
    return 1 if errors else 0


def panel_exprs(dashboard: dict) -> list[tuple[str, str]]:
    out = []
    for panel in dashboard.get("panels", []):
        for sub in [panel, *panel.get("panels", [])]:
            for t in sub.get("targets", []):
                if t.get("expr"):
                    out.append((f"{sub.get('title')} [{t.get('refId')}]", t["expr"]))
    return out


def substitute(expr: str) -> str:
    def var(m: re.Match) -> str:
        name = m.group(1) or m.group(2)
        return GRAFANA_VARS.get(name, "x")  # any dashboard variable becomes a plain label value

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", var, expr)


def dashboard_rules(paths: list[str]) -> int:
    rules = []
    for path in paths:
        for title, expr in panel_exprs(json.loads(Path(path).read_text())):
            rules.append(
                {
                    "record": f"dashboard_check:{len(rules)}",
                    "expr": substitute(expr),
                    "labels": {"panel": f"{Path(path).name}: {title}"},
                }
            )
    if not rules:
        print("no panel expressions found", file=sys.stderr)
        return 1
    yaml.safe_dump({"groups": [{"name": "dashboard-promql", "rules": rules}]}, sys.stdout, sort_keys=False, width=1000)
    return 0


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    sys.exit({"crds": check_crds, "dashboard-rules": dashboard_rules}[command](args))
