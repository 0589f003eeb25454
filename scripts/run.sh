#!/usr/bin/env bash
# Runs the gateway on its embedded default: the standalone config conf/quickstart.yaml
# (no control plane, no database). Extra arguments go to `gateway run`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
exec cargo run --release -p gateway -- run --config "${GATEWAY_CONFIG:-conf/quickstart.yaml}" "$@"
