#!/usr/bin/env bash
# The whole test suite, from a clean clone: installs what the build and the tests need, starts
# the services the tests use, then runs the supply-chain and deployment checks, fmt, clippy and
# every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

source scripts/deps.sh

# Services the control plane tests use (Redis, PostgreSQL). Start them when they are down.
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  log "starting redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
fi
if ! pg_isready -h 127.0.0.1 -p 5432 >/dev/null 2>&1; then
  log "starting postgresql"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
fi
for _ in $(seq 1 50); do
  redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && pg_isready -h 127.0.0.1 -p 5432 >/dev/null 2>&1 && break
  sleep 0.2
done

# The official SDKs, for the test that drives the gateway with them.
if ! .venv/bin/python -c "import openai, anthropic" >/dev/null 2>&1; then
  log "creating .venv with the openai and anthropic SDKs"
  python3 -m venv .venv
  .venv/bin/pip install -q "openai==3.57.0" "anthropic==2.14.0"
fi

log "supply chain: cargo deny (advisories offline, licenses, sources, bans)"
scripts/check-supply-chain.sh
log "deployment: Kustomize overlays, Kubernetes schemas, checkov (manifests and Dockerfile)"
scripts/check-deploy.sh

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
log "cargo test"
cargo test --workspace
log "schemathesis against a live control plane"
scripts/schemathesis.sh
