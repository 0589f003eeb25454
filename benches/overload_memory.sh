#!/usr/bin/env bash
# Memory under a misbehaving tenant: CONNS connections (default 150) with one valid key each
# announce a BODY_MB MiB body (default 6) and send half of it, then hold. Prints the gateway's
# RSS before, at the peak (VmHWM) and after, the budget in use and how many were shed (503).
#
#   benches/overload_memory.sh            # BUDGET_MB=256 by default
set -euo pipefail
cd "$(dirname "$0")/.."
CONNS=${CONNS:-150}; BODY_MB=${BODY_MB:-6}; BUDGET_MB=${BUDGET_MB:-256}
[ "${SKIP_BUILD:-0}" = 1 ] || cargo build --release -p gateway --bin gateway 2>&1 | tail -1
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port); ADMIN=$(free_port); UP=$(free_port)
DIR=$(mktemp -d)
KEY=gwk_overload_bench_key_000000000000000000000000000000000000000000000
DIGEST=$(printf %s "$KEY" | sha256sum | cut -d' ' -f1)
cat > "$DIR/gw.yaml" <<YAML
server:
  listen: "127.0.0.1:$PORT"
  admin_listen: "127.0.0.1:$ADMIN"
  threads: 2
  body_memory_budget_bytes: $((BUDGET_MB * 1024 * 1024))
  body_read_timeout_seconds: 60
providers:
  - name: up
    kind: openai-compatible
    base_url: "http://127.0.0.1:$UP"
routes:
  - model: "*"
    provider: up
projects:
  - slug: tenant
    keys:
      - digest: "$DIGEST"
YAML
GATEWAY_LOG=warn target/release/gateway run --config "$DIR/gw.yaml" > "$DIR/gw.log" 2>&1 &
GW=$!
trap 'kill $GW 2>/dev/null || true; rm -rf "$DIR"' EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$ADMIN/readyz" >/dev/null && break; sleep 0.1; done
rss() { awk -v k="$1" '$1==k":" {print int($2/1024)}' /proc/$GW/status; }
echo "RSS before: $(rss VmRSS) MiB"
python3 - "$PORT" "$KEY" "$CONNS" "$BODY_MB" <<'PY'
import socket, sys, time
port, key, conns, mb = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
n = mb * 1024 * 1024
socks = []
for i in range(conns):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(f"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {key}\r\ncontent-length: {n}\r\n\r\n".encode())
    try:
        s.sendall(b" " * (n // 2))
    except OSError:
        pass
    socks.append(s)
print(f"connections opened: {conns}", flush=True)
time.sleep(3)
PY
echo "RSS at peak (VmHWM): $(rss VmHWM) MiB; budget: $BUDGET_MB MiB"
curl -s "http://127.0.0.1:$ADMIN/metrics" | grep -E '^gateway_body_budget_(used|limit)_bytes|^gateway_rejections_total\{reason="overloaded"\}'
sleep 2
echo "RSS after the connections closed: $(rss VmRSS) MiB"
curl -s "http://127.0.0.1:$ADMIN/metrics" | grep -E '^gateway_body_budget_used_bytes'
