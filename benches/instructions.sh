#!/usr/bin/env bash
# Instructions per request: the gateway against the bare Pingora proxy, counted by callgrind.
# Unlike wall-clock throughput, instruction counts repeat to within a fraction of a percent
# whatever else runs on the machine, so a change to the hot path can be measured on a busy box.
#
#   benches/instructions.sh            # N=2000 requests per mix; results in benches/out-instr/
#   SKIP_BUILD=1 benches/instructions.sh
#
# Each target (bare Pingora, the gateway without limits, the gateway with limits and a budget
# checked by the local limiter; usage is always counted) runs under
# `valgrind --tool=callgrind`, one worker thread. Per mix (the ~1 KiB JSON chat request of
# `benches/load.sh` answered with ~600 B of JSON, then with SSE) a keep-alive client sends
# WARMUP requests, the counters are zeroed (`callgrind_control -z`), N requests go through one
# after another, and the counters are dumped (`callgrind_control -d`): the dump holds exactly
# N requests' worth of work in every thread of the process. Prints instructions per request
# and the ratio to bare Pingora; the dumps stay in OUT for
# `callgrind_annotate --inclusive=yes OUT/<target>-<mix>.out` (per-function breakdown).
#
# Built with the `profiling` profile (release, with line tables, LTO off, 16 codegen units)
# into target/profiling, so it never disturbs the fat-LTO release binaries of load.sh. Absolute
# counts differ a little from the LTO build; compare runs of this script with each other.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-2000}
WARMUP=${WARMUP:-200}
OUT=${OUT:-benches/out-instr}
TARGETS=${TARGETS:-"bare gateway gw_limits"}
rm -rf "$OUT"; mkdir -p "$OUT/mock"; OUT=$(cd "$OUT" && pwd)
for tool in valgrind nginx; do
  command -v $tool >/dev/null || { echo "$tool is needed (apt-get install valgrind nginx-light)"; exit 1; }
done
[ "${SKIP_BUILD:-0}" = 1 ] || cargo build --profile profiling -p gateway --bin gateway --example bare_pingora 2>&1 | tail -1
BIN=${BIN:-target/profiling}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
MOCK_PORT=$(free_port)

JSON_RESP=$(python3 - <<'PY'
import json
r={"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"bench-model",
   "choices":[{"index":0,"message":{"role":"assistant","content":"x"*380},"logprobs":None,"finish_reason":"stop"}],
   "usage":{"prompt_tokens":250,"completion_tokens":95,"total_tokens":345}}
print(json.dumps(r))
PY
)
SSE_RESP=$(python3 - <<'PY'
import json
ev=[]
for t in ["Hello"," from"," the"," bench"," mock"]:
    ev.append("data: "+json.dumps({"id":"c","object":"chat.completion.chunk","created":1,"model":"bench-model","choices":[{"index":0,"delta":{"content":t},"finish_reason":None}]})+"\\n\\n")
ev.append("data: [DONE]\\n\\n")
print("".join(ev))
PY
)
cat > "$OUT/mock/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $OUT/mock/nginx.pid;
error_log $OUT/mock/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $OUT/mock/body;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$MOCK_PORT;
    location /v1/chat/completions {
      if (\$http_x_bench_sse = "1") { rewrite ^ /sse last; }
      default_type application/json;
      return 200 '${JSON_RESP//\'/}';
    }
    location = /sse { internal; default_type text/event-stream; return 200 '$SSE_RESP'; }
  }
}
CONF

KEY="gwk_bench_$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
DIGEST=$(printf '%s' "$KEY" | sha256sum | cut -d' ' -f1)
# gateway_conf PORT ADMIN_PORT POLICY_LINES KEY_LINES
gateway_conf() {
cat <<CONF
server:
  listen: "127.0.0.1:$1"
  admin_listen: "127.0.0.1:$2"
  threads: 1
  watch_config: false
providers:
  - name: mock
    kind: openai-compatible
    base_url: "http://127.0.0.1:$MOCK_PORT"
    api_key: "env:BENCH_PROVIDER_KEY"
routes:
  - model: "bench-model"
    provider: mock
# A budgeted project is only admitted to priced models (403 model_not_priced otherwise).
prices:
  - model: "bench-model"
    input_per_mtok: 2500000
    output_per_mtok: 10000000
projects:
  - slug: bench
$3
    keys:
      - digest: "$DIGEST"
$4
CONF
}
# Limits that are checked on every request but never reached (as in load.sh).
POLICY="    requests_per_minute: 1000000000000
    tokens_per_minute: 1000000000000000
    monthly_budget_cents: 1000000000000"
KEY_POLICY="        requests_per_minute: 1000000000000
        tokens_per_minute: 1000000000000000"

python3 - > "$OUT/body.json" <<'PY'
import json
print(json.dumps({"model":"bench-model","max_tokens":256,"temperature":0.2,
  "messages":[{"role":"system","content":"You are a helpful assistant."},
              {"role":"user","content":"y"*860}]}), end="")
PY
# client PORT COUNT SSE: COUNT requests on one keep-alive connection; fails on any non-200.
client() {
  python3 - "$1" "$2" "$3" "$OUT/body.json" "$KEY" <<'PY'
import http.client, sys
port, n, sse, body_file, key = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4], sys.argv[5]
body = open(body_file, "rb").read()
headers = {"Content-Type": "application/json", "Authorization": "Bearer " + key}
if sse:
    headers["x-bench-sse"] = "1"
c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
for i in range(n):
    c.request("POST", "/v1/chat/completions", body, headers)
    r = c.getresponse()
    data = r.read()
    if r.status != 200 or (not sse and b"usage" not in data) or (sse and b"[DONE]" not in data):
        sys.exit(f"request {i} on port {port}: {r.status} {data[:200]!r}")
PY
}
total_of() { awk '/^(summary|totals):/ {print $2; exit}' "$1"; }

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
nginx -c "$OUT/mock/nginx.conf" -p "$OUT/mock" & pids+=($!)
for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$MOCK_PORT/" && break; sleep 0.1; done

results="$OUT/results.tsv"
printf 'target\tmix\trequests\tinstructions\tper_request\n' > "$results"
for target in $TARGETS; do
  port=$(free_port); admin=$(free_port)
  case $target in
    bare) cmd=("$BIN/examples/bare_pingora" "127.0.0.1:$port" "127.0.0.1:$MOCK_PORT" 1) ;;
    gateway) gateway_conf "$port" "$admin" "" "" > "$OUT/$target.yaml"
             cmd=("$BIN/gateway" run --config "$OUT/$target.yaml") ;;
    gw_limits) gateway_conf "$port" "$admin" "$POLICY" "$KEY_POLICY" > "$OUT/$target.yaml"
             cmd=("$BIN/gateway" run --config "$OUT/$target.yaml") ;;
    *) echo "unknown target $target"; exit 1 ;;
  esac
  BENCH_PROVIDER_KEY=sk-bench GATEWAY_LOG=warn valgrind --tool=callgrind --dump-instr=no \
    --callgrind-out-file="$OUT/$target.cg.%p" "${cmd[@]}" > "$OUT/$target.log" 2>&1 &
  vpid=$!; pids+=($vpid)
  for _ in $(seq 1 600); do
    curl -s -o /dev/null "http://127.0.0.1:$port/" && break
    kill -0 $vpid 2>/dev/null || { echo "$target exited:"; cat "$OUT/$target.log"; exit 1; }
    sleep 0.2
  done
  dump=1
  for mix in json sse; do
    sse=0; [ $mix = sse ] && sse=1
    client "$port" "$WARMUP" $sse
    callgrind_control -z $vpid >/dev/null 2>&1
    client "$port" "$N" $sse
    callgrind_control -d "$target-$mix" $vpid >/dev/null 2>&1
    # The dump file is written asynchronously: wait for it.
    f="$OUT/$target.cg.$vpid.$dump"
    for _ in $(seq 1 100); do [ -s "$f" ] && grep -q '^totals:' "$f" && break; sleep 0.2; done
    mv "$f" "$OUT/$target-$mix.out"
    dump=$((dump + 1))
    ir=$(total_of "$OUT/$target-$mix.out")
    printf '%s\t%s\t%s\t%s\t%s\n' "$target" $mix "$N" "$ir" $((ir / N)) >> "$results"
  done
  # SIGINT: Pingora's fast shutdown (SIGTERM would wait out the graceful period).
  kill -INT $vpid; for _ in $(seq 1 50); do kill -0 $vpid 2>/dev/null || break; sleep 0.2; done
  kill -9 $vpid 2>/dev/null || true; wait $vpid 2>/dev/null || true
done
kill "${pids[0]}" 2>/dev/null || true

python3 - "$results" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
by = {(r["target"], r["mix"]): int(r["per_request"]) for r in rows}
names = {"bare": "bare Pingora", "gateway": "gateway", "gw_limits": "gateway + limits (local)"}
print("| target | mix | instructions per request | ratio to bare Pingora |")
print("|---|---|---|---|")
for (t, m), v in by.items():
    b = by.get(("bare", m))
    print(f"| {names.get(t, t)} | {m} | {v:,} | {v / b:.2f}x |" if b else f"| {names.get(t, t)} | {m} | {v:,} | - |")
PY
