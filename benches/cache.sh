#!/usr/bin/env bash
# Cache benchmark: how fast the gateway serves response-cache hits, against the same
# baselines as benches/load.sh measured in the same run: a bare Pingora proxy with no logic
# (gateway/examples/bare_pingora.rs) serving a miss (every request goes to the mock
# upstream), and the gateway itself serving misses (cache off). Target: hits at least as fast
# as bare Pingora's misses at 64 connections.
#
#   benches/cache.sh            # DURATION=8, CONNS="16 64" by default; results in benches/out-cache/
#
# The request is the ~1 KiB JSON chat body of load.sh with temperature 0 (cacheable), the
# response the same ~600 B JSON. One worker thread for Pingora and the gateway (WORKERS=).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-8}
WORKERS=${WORKERS:-1}
CONNS=${CONNS:-"16 64"}
OUT=benches/out-cache
rm -rf "$OUT"; mkdir -p "$OUT/mock"

for tool in nginx wrk; do
  command -v $tool >/dev/null || { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk >/dev/null; break; }
done
[ "${SKIP_BUILD:-0}" = 1 ] || cargo build --release -p gateway --bin gateway --example bare_pingora 2>&1 | tail -1

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
MOCK_PORT=$(free_port); BARE_PORT=$(free_port)
HIT_PORT=$(free_port); HIT_ADMIN=$(free_port); MISS_PORT=$(free_port); MISS_ADMIN=$(free_port)

JSON_RESP=$(python3 - <<'PY'
import json
r={"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"bench-model",
   "choices":[{"index":0,"message":{"role":"assistant","content":"x"*380},"logprobs":None,"finish_reason":"stop"}],
   "usage":{"prompt_tokens":250,"completion_tokens":95,"total_tokens":345}}
print(json.dumps(r))
PY
)
cat > "$OUT/mock/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $PWD/$OUT/mock/nginx.pid;
error_log $PWD/$OUT/mock/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $PWD/$OUT/mock/body;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$MOCK_PORT;
    location /v1/chat/completions { default_type application/json; return 200 '$JSON_RESP'; }
  }
}
CONF

KEY="gwk_bench_$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
DIGEST=$(printf '%s' "$KEY" | sha256sum | cut -d' ' -f1)
# gateway_conf PORT ADMIN_PORT CACHE_LINE
gateway_conf() {
cat <<CONF
server:
  listen: "127.0.0.1:$1"
  admin_listen: "127.0.0.1:$2"
  threads: $WORKERS
providers:
  - name: mock
    kind: openai-compatible
    base_url: "http://127.0.0.1:$MOCK_PORT"
    api_key: "env:BENCH_PROVIDER_KEY"
routes:
  - model: "bench-model"
    provider: mock
projects:
  - slug: bench
$3
    keys:
      - digest: "$DIGEST"
CONF
}
gateway_conf "$HIT_PORT" "$HIT_ADMIN" "    cache: {ttl_seconds: 3600}" > "$OUT/gateway-cache.yaml"
gateway_conf "$MISS_PORT" "$MISS_ADMIN" "" > "$OUT/gateway.yaml"

python3 - > "$OUT/body.json" <<'PY'
import json
print(json.dumps({"model":"bench-model","max_tokens":256,"temperature":0,
  "messages":[{"role":"system","content":"You are a helpful assistant."},
              {"role":"user","content":"y"*860}]}), end="")
PY
cat > "$OUT/req.lua" <<'LUA'
local f = assert(io.open(os.getenv("BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("KEY")
LUA

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
nginx -c "$PWD/$OUT/mock/nginx.conf" -p "$PWD/$OUT/mock" & pids+=($!)
./target/release/examples/bare_pingora "127.0.0.1:$BARE_PORT" "127.0.0.1:$MOCK_PORT" "$WORKERS" > "$OUT/bare.log" 2>&1 & pids+=($!)
BENCH_PROVIDER_KEY=sk-bench GATEWAY_LOG=warn ./target/release/gateway run --config "$OUT/gateway-cache.yaml" > "$OUT/gateway-cache.log" 2>&1 & HIT_PID=$!; pids+=($HIT_PID)
BENCH_PROVIDER_KEY=sk-bench GATEWAY_LOG=warn ./target/release/gateway run --config "$OUT/gateway.yaml" > "$OUT/gateway.log" 2>&1 & pids+=($!)
for admin in $HIT_ADMIN $MISS_ADMIN; do
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null && break; sleep 0.1; done
done
for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$BARE_PORT/" && break; sleep 0.1; done

# Sanity: 200 everywhere; the cache gateway's first answer is a miss, its second a hit.
for port in $MOCK_PORT $BARE_PORT $MISS_PORT $HIT_PORT $HIT_PORT; do
  hdrs=$(curl -s -D - -o /dev/null -H "Authorization: Bearer $KEY" -H 'content-type: application/json' \
    --data-binary @"$OUT/body.json" "http://127.0.0.1:$port/v1/chat/completions")
  echo "$hdrs" | head -1 | grep -q ' 200' || { echo "target on port $port: $hdrs"; cat "$OUT/gateway-cache.log"; exit 1; }
  [ "$port" = "$HIT_PORT" ] && echo "cache gateway: $(echo "$hdrs" | grep -i '^x-cache:' | tr -d '\r')"
done

to_ms() { awk -v v="$1" 'BEGIN{ if (v ~ /us$/) { sub(/us$/,"",v); print v/1000 } else if (v ~ /ms$/) { sub(/ms$/,"",v); print v+0 } else if (v ~ /s$/) { sub(/s$/,"",v); print v*1000 } else print v }'; }
results="$OUT/results.tsv"
printf 'conns\ttarget\trps\tp50_ms\tp99_ms\terrors\n' > "$results"
for c in $CONNS; do
  for target in bare gateway_miss gateway_hit; do
    case $target in bare) port=$BARE_PORT;; gateway_miss) port=$MISS_PORT;; gateway_hit) port=$HIT_PORT;; esac
    out=$(KEY=$KEY BODY_FILE="$OUT/body.json" wrk -t1 -c"$c" -d"${DURATION}s" --latency -s "$OUT/req.lua" "http://127.0.0.1:$port/v1/chat/completions")
    echo "$out" > "$OUT/wrk-$c-$target.txt"
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    p50=$(to_ms "$(echo "$out" | awk '$1=="50%" {print $2}')")
    p99=$(to_ms "$(echo "$out" | awk '$1=="99%" {print $2}')")
    errs=$(echo "$out" | awk '/Non-2xx/ {print $NF} /Socket errors/ {n=0; for(i=1;i<=NF;i++) if ($i ~ /^[0-9]+,?$/) n+=$i; print n}' | paste -sd+ | bc 2>/dev/null || echo 0)
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$c" $target "$rps" "$p50" "$p99" "${errs:-0}" >> "$results"
  done
done
curl -s "http://127.0.0.1:$HIT_ADMIN/metrics" > "$OUT/gateway-cache.metrics"
awk '/^gateway_cache_requests_total/ && /outcome="hit"/ {h+=$2} /^gateway_cache_requests_total/ && /outcome="miss"/ {m+=$2} END {printf "cache gateway: %d hits, %d misses\n", h, m}' "$OUT/gateway-cache.metrics"
RSS_KB=$(awk '/VmHWM/ {print $2}' /proc/$HIT_PID/status)

python3 - "$results" "$RSS_KB" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
by = {(r["conns"], r["target"]): r for r in rows}
f = lambda x: float(x or 0)
print("| conns | bare Pingora (miss) req/s | gateway miss req/s | gateway hit req/s | hit/bare req/s | bare p50 / p99 ms | hit p50 / p99 ms | errors (bare/miss/hit) |")
print("|---|---|---|---|---|---|---|---|")
for c in sorted({r["conns"] for r in rows}, key=int):
    b, m, h = by[(c, "bare")], by[(c, "gateway_miss")], by[(c, "gateway_hit")]
    ratio = f(h["rps"]) / f(b["rps"]) if f(b["rps"]) else 0
    print(f"| {c} | {f(b['rps']):,.0f} | {f(m['rps']):,.0f} | {f(h['rps']):,.0f} | {ratio:.2f}x | "
          f"{f(b['p50_ms']):.2f} / {f(b['p99_ms']):.2f} | {f(h['p50_ms']):.2f} / {f(h['p99_ms']):.2f} | "
          f"{b['errors']}/{m['errors']}/{h['errors']} |")
print(f"\ncache gateway peak RSS (VmHWM): {int(sys.argv[2]) / 1024:.1f} MiB")
PY
