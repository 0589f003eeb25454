#!/usr/bin/env bash
# Runs schemathesis (every check) against a live control plane built from this tree, and fails
# if it finds anything. The control plane runs the debug binary with a throwaway config: SQLite in
# a temp dir, development-mode identity (the platform-admins group header), a token bucket wide
# enough that generated requests reach the handlers instead of a 429.
#
#   scripts/schemathesis.sh            # builds target/debug/controlplane if needed
#   ST_MAX_EXAMPLES=50 scripts/schemathesis.sh
#
# Every check runs except positive_data_acceptance: some valid-looking bodies are refused for
# reasons JSON Schema cannot state (a route naming a provider or a project naming a policy that
# does not exist in the org, `from` after `to`, `expires_at` in the past, `1.0` for an integer),
# and those 400s are correct. Schema-violating data must still be refused (negative checks).
#
# The run is bounded by ST_MAX_EXAMPLES per operation (default 25) so it stays within about
# three minutes on two cores.
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION="4.32.5"
MAX_EXAMPLES="${ST_MAX_EXAMPLES:-25}"

if ! .venv-schemathesis/bin/schemathesis --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  echo "==> creating .venv-schemathesis with schemathesis $SCHEMATHESIS_VERSION"
  python3 -m venv .venv-schemathesis
  .venv-schemathesis/bin/pip install -q "schemathesis==$SCHEMATHESIS_VERSION"
fi

cargo build -q -p controlplane

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
tmp="$(mktemp -d)"
api_port="$(free_port)"
admin_port="$(free_port)"
cat >"$tmp/controlplane.yaml" <<YAML
server:
  listen: "127.0.0.1:$api_port"
  admin_listen: "127.0.0.1:$admin_port"
database:
  sqlite_path: "$tmp/cp.db"
rbac:
  group_roles:
    - { group: platform-admins, org: "*", role: admin }
guards:
  rate_limit_burst: 100000
  rate_limit_per_second: 100000
YAML

RUST_LOG=warn target/debug/controlplane serve --config "$tmp/controlplane.yaml" >"$tmp/controlplane.log" 2>&1 &
cp_pid=$!
cleanup() {
  kill "$cp_pid" 2>/dev/null || true
  wait "$cp_pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:$admin_port/healthz" >/dev/null 2>&1 && break
  kill -0 "$cp_pid" 2>/dev/null || { cat "$tmp/controlplane.log"; echo "control plane exited at start" >&2; exit 1; }
  sleep 0.1
done

echo "==> schemathesis $SCHEMATHESIS_VERSION against http://127.0.0.1:$api_port (max $MAX_EXAMPLES examples per operation)"
status=0
.venv-schemathesis/bin/schemathesis run "http://127.0.0.1:$api_port/api/v1/openapi.json" \
  --url "http://127.0.0.1:$api_port" \
  -H "X-Forwarded-Email: schemathesis@example.com" \
  -H "X-Forwarded-Groups: platform-admins" \
  --checks all \
  --exclude-checks positive_data_acceptance \
  --max-examples "$MAX_EXAMPLES" \
  --seed 1 \
  --suppress-health-check all \
  --max-time "${ST_MAX_TIME:-150}" || status=$?
if [ "$status" -ne 0 ]; then
  echo "schemathesis found contract failures (see above); control plane log:" >&2
  tail -n 50 "$tmp/controlplane.log" >&2
  exit "$status"
fi
