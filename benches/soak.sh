#!/usr/bin/env bash
# Soak: DURATION seconds (default 1800 = 30 min) of mixed traffic against a release gateway with
# its default connection limits and deadlines: JSON and SSE completions, 401s (bad key), 413s
# (body over the cap), slow clients trickling a head (cut at the head deadline), idle
# connections (cut at the deadline and reopened), with the config file rewritten every 10 s
# (a reload each time). Every minute it prints RSS, open descriptors, the config generation and
# the counts per outcome; at the end a Markdown table of the same, for the README.
#
#   benches/soak.sh                       # DURATION=1800
#   DURATION=120 SKIP_BUILD=1 benches/soak.sh
#
# The load is moderate on purpose (a shared machine): about RATE (default 40) requests/s.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-1800}; RATE=${RATE:-40}; IDLE=${IDLE:-200}; SLOW=${SLOW:-20}; CONNS_FOR_LIMIT=$IDLE
BIN=${GATEWAY_BIN:-target/release/gateway}
[ "${SKIP_BUILD:-0}" = 1 ] || cargo build --release -p gateway --bin gateway 2>&1 | tail -1
# (as root the hard limit itself can be raised; elsewhere this keeps the hard limit)
ulimit -Hn $((CONNS_FOR_LIMIT * 2 + 4096)) 2>/dev/null || true
ulimit -n "$(ulimit -Hn)"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port); ADMIN=$(free_port); UP=$(free_port)
DIR=$(mktemp -d)
KEY=gwk_soak_bench_key_00000000000000000000000000000000000000000000000
DIGEST=$(printf %s "$KEY" | sha256sum | cut -d' ' -f1)
write_config() { # $1: a number that changes every reload
  cat > "$DIR/gw.yaml.tmp" <<YAML
server:
  listen: "127.0.0.1:$PORT"
  admin_listen: "127.0.0.1:$ADMIN"
  threads: 2
max_request_bytes: 65536
providers:
  - name: up
    kind: openai-compatible
    base_url: "http://127.0.0.1:$UP"
routes:
  - model: "*"
    provider: up
  - model: "reload-$1"
    provider: up
projects:
  - slug: tenant
    keys:
      - digest: "$DIGEST"
YAML
  mv "$DIR/gw.yaml.tmp" "$DIR/gw.yaml"
}
write_config 0
python3 - "$UP" > "$DIR/up.log" 2>&1 <<'PY' &
import http.server, json, sys, time
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        req = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
        if req.get("stream"):
            self.send_response(200); self.send_header("content-type", "text/event-stream")
            self.send_header("transfer-encoding", "chunked"); self.end_headers()
            for t in ["Hello", " soak", " test", ""]:
                ev = {"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": t}, "finish_reason": None if t else "stop"}]}
                if not t:
                    ev["usage"] = {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}
                data = ("data: " + json.dumps(ev) + "\n\n").encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data)); self.wfile.flush(); time.sleep(0.05)
            data = b"data: [DONE]\n\n"
            self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data)); self.wfile.flush()
            return
        body = json.dumps({"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": "x" * 300}, "finish_reason": "stop"}],
                           "usage": {"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6}}).encode()
        self.send_response(200); self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer.daemon_threads = True
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
UPPID=$!
GATEWAY_LOG=info "$BIN" run --config "$DIR/gw.yaml" > "$DIR/gw.log" 2>&1 &
GW=$!
trap 'kill $GW $UPPID $RELOADER 2>/dev/null || true; rm -rf "$DIR"' EXIT
RELOADER=
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$ADMIN/readyz" >/dev/null && break; sleep 0.1; done
( i=0; while true; do sleep 10; i=$((i + 1)); write_config $i; done ) &
RELOADER=$!

python3 - "$PORT" "$ADMIN" "$KEY" "$DURATION" "$RATE" "$IDLE" "$SLOW" "$GW" "$DIR/gw.log" <<'PY'
import collections, http.client, json, os, random, socket, sys, threading, time, urllib.request
port, admin, key = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
duration, rate, n_idle, n_slow, pid, log = float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7]), sys.argv[8], sys.argv[9]
counts = collections.Counter(); lock = threading.Lock()
stop = time.time() + duration
def count(k, n=1):
    with lock: counts[k] += n
def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"): return int(line.split()[1]) // 1024
def fds(): return len(os.listdir(f"/proc/{pid}/fd"))
def generation():
    try: return json.load(urllib.request.urlopen(f"http://127.0.0.1:{admin}/readyz", timeout=5))["config_generation"]
    except Exception: return -1
def metric(name):
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5).read().decode()
        return sum(float(l.split()[-1]) for l in text.splitlines() if l.startswith(name))
    except Exception: return -1
auth = {"authorization": "Bearer " + key, "content-type": "application/json"}
small = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
sse = json.dumps({"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
big = json.dumps({"model": "m", "messages": [{"role": "user", "content": "x" * 100000}]})
# (share of the rate, name, method, body, headers, expected status)
mix = [(0.55, "json", small, auth, 200), (0.2, "sse", sse, auth, 200),
       (0.15, "401", small, {"authorization": "Bearer gwk_wrong", "content-type": "application/json"}, 401),
       (0.1, "413", big, auth, 413)]
def worker():
    conn = None
    while time.time() < stop:
        r = random.random(); acc = 0
        for share, name, body, headers, want in mix:
            acc += share
            if r <= acc: break
        try:
            if conn is None: conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("POST", "/v1/chat/completions", body, headers)
            resp = conn.getresponse(); data = resp.read()
            if resp.status == want and (name != "sse" or b"[DONE]" in data): count(name)
            else: count(f"unexpected {name}->{resp.status}")
            if resp.getheader("connection", "").lower() == "close": conn.close(); conn = None
        except Exception as e:
            count(f"error {name}: {type(e).__name__}")
            try: conn.close()
            except Exception: pass
            conn = None
        time.sleep(random.expovariate(rate / 8))
def slow_client():
    while time.time() < stop:
        try:
            s = socket.create_connection(("127.0.0.1", port)); s.settimeout(30)
            start = time.time()
            s.sendall(b"GET /v1/models HTTP/1.1\r\n")
            closed = False
            while time.time() - start < 25:
                time.sleep(1)
                try: s.sendall(b"x-slow: 1\r\n")
                except OSError: closed = True; break
                s.setblocking(False)
                try:
                    if s.recv(4096) is not None: closed = True; break
                except BlockingIOError: pass
                except OSError: closed = True; break
                finally: s.setblocking(True)
            count("slow closed" if closed else "slow NOT closed")
            s.close()
        except Exception as e:
            count(f"error slow: {type(e).__name__}")
            time.sleep(1)
def idle_pool():
    socks = []
    while time.time() < stop:
        while len(socks) < n_idle:
            try: socks.append(socket.create_connection(("127.0.0.1", port)))
            except Exception as e: count(f"error idle: {type(e).__name__}"); break
        time.sleep(1)
        alive = []
        for s in socks:
            s.setblocking(False)
            try:
                if s.recv(1) == b"": count("idle closed"); s.close(); continue
            except BlockingIOError: pass
            except OSError: count("idle closed"); s.close(); continue
            alive.append(s)
        socks = alive
    for s in socks: s.close()
threads = [threading.Thread(target=worker, daemon=True) for _ in range(8)]
threads += [threading.Thread(target=slow_client, daemon=True) for _ in range(n_slow)]
threads += [threading.Thread(target=idle_pool, daemon=True)]
for t in threads: t.start()
keys = ["json", "sse", "401", "413", "slow closed", "idle closed"]
rows = []
start = time.time()
print(f"{'min':>4} {'RSS MiB':>8} {'fds':>6} {'gen':>5} " + " ".join(f"{k:>11}" for k in keys) + "  other", flush=True)
for minute in range(1, max(1, int(duration // 60)) + 1):
    time.sleep(max(0, start + 60 * minute - time.time()))
    with lock: snap = dict(counts)
    other = {k: v for k, v in snap.items() if k not in keys}
    row = (minute, rss(), fds(), generation(), [snap.get(k, 0) for k in keys], other)
    rows.append(row)
    print(f"{row[0]:>4} {row[1]:>8} {row[2]:>6} {row[3]:>5} " + " ".join(f"{v:>11}" for v in row[4]) + f"  {other}", flush=True)
error_lines = [l for l in open(log) if '"level":"ERROR"' in l]
errors = len(error_lines)
by_message = collections.Counter(json.loads(l).get("message", "?")[:120] for l in error_lines)
print()
print("| minute | RSS MiB | descriptors | config generation | " + " | ".join(keys) + " | other |")
print("|---" * (len(keys) + 5) + "|")
for r in rows:
    print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | " + " | ".join(str(v) for v in r[4]) + f" | {sum(r[5].values()) or 0} |")
print()
print(f"ERROR log lines: {errors}; other outcomes (cumulative): {rows[-1][5] if rows else {}}")
for message, n in by_message.most_common(5):
    print(f"  {n} x ERROR {message}")
print(f"gateway_client_timeouts_total: {metric('gateway_client_timeouts_total')}, gateway_connections_refused_total: {metric('gateway_connections_refused_total')}")
if len(rows) >= 2:
    print(f"RSS first minute -> last minute: {rows[0][1]} -> {rows[-1][1]} MiB; descriptors {rows[0][2]} -> {rows[-1][2]}")
PY
