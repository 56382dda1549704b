#!/usr/bin/env bash
# Every offline check of the deployment files. No Kubernetes cluster and no Docker engine needed
# (none runs here): charts are linted and rendered, and the rendered manifests validated against
# the Kubernetes, KEDA and prometheus-operator schemas; compose files are resolved by the real
# compose binary; Prometheus config, rules and rule tests go through promtool, and so does every
# dashboard panel's PromQL; Dockerfiles are linted.
# Tools: bash deploy/install-tools.sh (into .tools/). Usage: bash deploy/check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
TOOLS=$(realpath -m "${TOOLS_DIR:-.tools}")
export PATH="$TOOLS/bin:$PATH"
PY="$TOOLS/venv/bin/python"
CHART=deploy/helm
K8S_VERSIONS=(1.25.0 1.33.0)   # the chart's kubeVersion floor, and a recent release
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

for tool in helm kubernetes-validate docker-compose promtool hadolint; do
    command -v "$tool" >/dev/null || { echo "check.sh: $tool missing; run: bash deploy/install-tools.sh" >&2; exit 2; }
done

failed=()
step() {  # step NAME COMMAND...: run, show output only on failure, keep going
    local name=$1; shift
    if "$@" >"$OUT/step.log" 2>&1; then
        echo "ok    $name"
    else
        echo "FAIL  $name"; sed 's/^/      /' "$OUT/step.log" | grep -v 'found symbolic link' | tail -n 40
        failed+=("$name")
    fi
}

# -- Helm ---------------------------------------------------------------------------------------
# Files under deploy/helm/files/ are links to monitoring/; helm notes each one on stderr.
scenarios=("default:" "staging:$CHART/values-staging.yaml" "production:$CHART/values-production.yaml")
for f in "$CHART"/ci/*-values.yaml; do scenarios+=("ci-$(basename "$f" -values.yaml):$f"); done
for scenario in "${scenarios[@]}"; do
    name=${scenario%%:*}; values=${scenario#*:}
    args=(); [ -n "$values" ] && args=(-f "$values")
    step "helm lint --strict ($name)" helm lint --strict "$CHART" "${args[@]}"
    step "helm template ($name)" sh -c 'helm template roadsigns "$0" --namespace roadsigns "$@" > "'"$OUT/$name.yaml"'"' \
        "$CHART" "${args[@]}"
    step "helm install --dry-run=client, NOTES included ($name)" \
        helm install roadsigns "$CHART" --namespace roadsigns --dry-run=client "${args[@]}"
    for k in "${K8S_VERSIONS[@]}"; do
        step "kubernetes-validate --strict -k $k ($name)" \
            kubernetes-validate --strict --quiet --no-warn -k "$k" "$OUT/$name.yaml"
    done
    step "KEDA and prometheus-operator CRD models ($name)" "$PY" deploy/offline_checks.py crds "$OUT/$name.yaml"
done

# -- docker compose -----------------------------------------------------------------------------
# Placeholder secrets, only so that the required ${VAR:?} interpolations resolve.
compose_env=(env POSTGRES_PASSWORD=check FLOWER_BASIC_AUTH=check:check GRAFANA_ADMIN_PASSWORD=check)
step "docker compose config -q" "${compose_env[@]}" docker-compose -f docker-compose.yml config -q
step "docker compose config -q (with GPU override)" \
    "${compose_env[@]}" docker-compose -f docker-compose.yml -f docker-compose.gpu.yml config -q

# -- Prometheus and Grafana -----------------------------------------------------------------------
step "promtool check config" promtool check config monitoring/prometheus/prometheus.yml
step "promtool check rules" promtool check rules monitoring/prometheus/rules/*.yml
step "promtool test rules" promtool test rules monitoring/prometheus/tests/*.test.yml
step "dashboard JSON matches its generator" "$PY" monitoring/grafana/dashboards/build.py --check
step "dashboard panels' PromQL (promtool)" sh -c '"$0" deploy/offline_checks.py dashboard-rules monitoring/grafana/dashboards/*.json \
    > "'"$OUT"'/dashboard-rules.yml" && promtool check rules "'"$OUT"'/dashboard-rules.yml"' "$PY"

# -- Dockerfiles --------------------------------------------------------------------------------
step "hadolint" hadolint --config deploy/hadolint.yaml services/*/Dockerfile deploy/mlflow/Dockerfile

if [ ${#failed[@]} -gt 0 ]; then
    echo "check.sh: ${#failed[@]} check(s) failed: ${failed[*]}"
    exit 1
fi
echo "check.sh: every deployment check passed"
