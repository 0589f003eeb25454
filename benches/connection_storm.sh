#!/usr/bin/env bash
# Memory after a connection storm: warm the gateway with real requests, read its RSS, open
# CONNS (default 20,000) idle connections that each send half a request head and hold, read the
# RSS at the peak, close them all, wait SETTLE seconds (default 30) and read the RSS again.
# Prints before / peak / after and the ratio after/before (target: <= 2.0), and whether the
# admin /healthz answered during the storm.
#
#   benches/connection_storm.sh                   # release build of the current tree
#   SKIP_BUILD=1 GATEWAY_BIN=path benches/connection_storm.sh   # another binary (A/B)
#
# The gateway runs with max_connections above CONNS and a head deadline longer than the storm,
# so every connection is really held (the defaults would refuse or time most of them out,
# which is the point of the defaults, not of this measurement).
set -euo pipefail
cd "$(dirname "$0")/.."
CONNS=${CONNS:-20000}; SETTLE=${SETTLE:-30}; HOLD=${HOLD:-5}; CONNS_FOR_LIMIT=$CONNS
BIN=${GATEWAY_BIN:-target/release/gateway}
[ "${SKIP_BUILD:-0}" = 1 ] || cargo build --release -p gateway --bin gateway 2>&1 | tail -1
# Both ends of CONNS connections live on this machine: raise the descriptor limit (the gateway
# raises its own soft limit to the hard one at start).
# (as root the hard limit itself can be raised; elsewhere this keeps the hard limit)
ulimit -Hn $((CONNS_FOR_LIMIT * 2 + 4096)) 2>/dev/null || true
ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -ge $((CONNS + 500)) ] || { echo "ulimit -Hn $(ulimit -Hn) is too low for CONNS=$CONNS" >&2; exit 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port); ADMIN=$(free_port); UP=$(free_port)
DIR=$(mktemp -d)
KEY=gwk_storm_bench_key_0000000000000000000000000000000000000000000000
DIGEST=$(printf %s "$KEY" | sha256sum | cut -d' ' -f1)
cat > "$DIR/gw.yaml" <<YAML
server:
  listen: "127.0.0.1:$PORT"
  admin_listen: "127.0.0.1:$ADMIN"
  threads: 2
  max_connections: $((CONNS + 1000))
  head_timeout_seconds: 300
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
# A tiny upstream for the warm-up requests.
python3 - "$UP" > "$DIR/up.log" 2>&1 <<'PY' &
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        body = b'{"id":"x","object":"chat.completion","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}'
        self.send_response(200); self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
UPPID=$!
GATEWAY_LOG=warn "$BIN" run --config "$DIR/gw.yaml" > "$DIR/gw.log" 2>&1 &
GW=$!
trap 'kill $GW $UPPID 2>/dev/null || true; rm -rf "$DIR"' EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$ADMIN/readyz" >/dev/null && break; sleep 0.1; done
rss() { awk '$1=="VmRSS:" {print int($2/1024)}' /proc/$GW/status; }

python3 - "$PORT" "$ADMIN" "$KEY" "$CONNS" "$HOLD" "$GW" "$DIR/before" <<'PY'
import http.client, json, socket, sys, time, urllib.request
port, admin, key, conns, hold, pid = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5]), sys.argv[6]
def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
def warm(n):
    c = http.client.HTTPConnection("127.0.0.1", port)
    for _ in range(n):
        c.request("POST", "/v1/chat/completions", body, {"authorization": "Bearer " + key, "content-type": "application/json"})
        r = c.getresponse(); r.read(); assert r.status == 200, r.status
    c.close()
warm(2000)
time.sleep(2)
before = rss()
def allocator():
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5).read().decode()
    except Exception:
        return ""
    figures = {l.split('"')[1]: int(l.split()[-1]) for l in text.splitlines() if l.startswith("gateway_allocator_bytes")}
    return ", ".join(f"{k} {v / 1048576:.1f}" for k, v in figures.items())
alloc_before = allocator()
socks = []
head = b"GET /v1/models HTTP/1.1\r\nhost: storm\r\nx-padding: " + b"a" * 200 + b"\r\n"
t0 = time.time()
for i in range(conns):
    s = socket.socket(); s.setblocking(True)
    s.connect(("127.0.0.1", port)); s.sendall(head); socks.append(s)
opened = time.time() - t0
time.sleep(hold)
peak = rss()
try:
    healthz = urllib.request.urlopen(f"http://127.0.0.1:{admin}/healthz", timeout=5).status
except Exception as e:
    healthz = f"failed ({e})"
for s in socks:
    s.close()
socks = None
print(f"storm: {conns} connections opened in {opened:.1f} s; /healthz during the storm: {healthz}")
print(f"RSS before: {before} MiB" + (f" (allocator MiB: {alloc_before})" if alloc_before else ""))
print(f"RSS peak:   {peak} MiB")
sys.stdout.flush()
open(sys.argv[7], "w").write(str(before))
PY
BEFORE=$(cat "$DIR/before")
sleep "$SETTLE"
AFTER=$(rss)
echo "RSS after ${SETTLE}s: $AFTER MiB"
# The allocator's own view (jemalloc builds): live bytes vs pages it keeps resident, so a
# leak (allocated grew) can be told from fragmentation or bookkeeping (resident/metadata grew).
curl -sf "http://127.0.0.1:$ADMIN/metrics" | awk '/^gateway_allocator_bytes/ {
  sub(/.*kind="/, ""); split($0, a, "\"} "); printf "allocator %-9s %7.1f MiB\n", a[1], a[2] / 1048576 }' || true
python3 -c "r=$AFTER/$BEFORE; print(f'ratio after/before: {r:.2f} (target <= 2.0): ' + ('PASS' if r <= 2.0 else 'FAIL'))"
echo "ERROR log lines: $(grep -c '"level":"ERROR"' "$DIR/gw.log" || true)"
grep '"level":"ERROR"' "$DIR/gw.log" | cut -c1-300 | sort | uniq -c | sort -rn | head -5 || true
