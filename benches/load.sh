#!/usr/bin/env bash
# Load benchmark: the same request mix sent with no proxy, through nginx (plain keep-alive
# reverse proxy) and through the gateway (key auth on), against one fast mock upstream on
# loopback, at 1, 16 and 64 connections. nginx gets WORKERS (default 1) worker processes and the
# gateway as many worker threads; the mock upstream (nginx, 1 worker) and wrk (1 thread) share the machine's other core.
#
#   benches/load.sh            # DURATION=8 by default; results in benches/out/
#
# Prints requests/s, p50/p99 latency per run, the gateway's peak RSS, and ratios to nginx.
# The gateway runs three times over: without limits (usage is always counted), with limits and
# a budget checked on every request by the local limiter, and with the same checked in Redis
# (127.0.0.1:6379, or REDIS_URL; skipped when it does not answer).
# A bare Pingora proxy with no logic (gateway/examples/bare_pingora.rs) runs too: the floor
# that shows what the gateway's own work costs on top of Pingora.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-8}
WORKERS=${WORKERS:-1}
CONNS=${CONNS:-"1 16 64"}
# Another gateway binary, e.g. one built without jemalloc for an allocator A/B:
#   cargo build --release -p gateway --bin gateway --no-default-features --target-dir target/sysalloc
#   GATEWAY_BIN=target/sysalloc/release/gateway SKIP_BUILD=1 benches/load.sh
GATEWAY_BIN=${GATEWAY_BIN:-./target/release/gateway}
OUT=benches/out
rm -rf "$OUT"; mkdir -p "$OUT"

for tool in nginx wrk; do
  command -v $tool >/dev/null || { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk >/dev/null; break; }
done
[ "${SKIP_BUILD:-0}" = 1 ] || cargo build --release -p gateway --bin gateway --example bare_pingora 2>&1 | tail -1

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
MOCK_PORT=$(free_port); NGINX_PORT=$(free_port); GW_PORT=$(free_port); GW_ADMIN=$(free_port); BARE_PORT=$(free_port)
GWL_PORT=$(free_port); GWL_ADMIN=$(free_port); GWR_PORT=$(free_port); GWR_ADMIN=$(free_port)
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
HAVE_REDIS=0; redis-cli -u "$REDIS_URL" ping >/dev/null 2>&1 && HAVE_REDIS=1

# ~600 B JSON response and an SSE variant.
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
JSON_RESP_ESC=${JSON_RESP//\'/}
mkdir -p "$OUT/mock" "$OUT/nginx"
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
    location /v1/chat/completions {
      if (\$http_x_bench_sse = "1") { rewrite ^ /sse last; }
      default_type application/json;
      return 200 '$JSON_RESP_ESC';
    }
    location = /sse { internal; default_type text/event-stream; return 200 '$SSE_RESP'; }
  }
}
CONF
cat > "$OUT/nginx/nginx.conf" <<CONF
worker_processes $WORKERS;
daemon off;
pid $PWD/$OUT/nginx/nginx.pid;
error_log $PWD/$OUT/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $PWD/$OUT/nginx/body;
  proxy_temp_path $PWD/$OUT/nginx/proxy;
  keepalive_requests 1000000;
  upstream mock { server 127.0.0.1:$MOCK_PORT; keepalive 128; }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    client_max_body_size 10m;
    location / {
      proxy_pass http://mock;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }
  }
}
CONF

KEY="gwk_bench_$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
DIGEST=$(printf '%s' "$KEY" | sha256sum | cut -d' ' -f1)
# gateway_conf PORT ADMIN_PORT POLICY_LINES SERVER_LINES
gateway_conf() {
cat <<CONF
server:
  listen: "127.0.0.1:$1"
  admin_listen: "127.0.0.1:$2"
  threads: $WORKERS
$4
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
        requests_per_minute: 1000000000000
        tokens_per_minute: 1000000000000000
CONF
}
# Limits that are checked on every request but never reached.
POLICY="    requests_per_minute: 1000000000000
    tokens_per_minute: 1000000000000000
    monthly_budget_cents: 1000000000000"
gateway_conf "$GW_PORT" "$GW_ADMIN" "" "" | grep -v '_per_minute: 1000000000000' > "$OUT/gateway.yaml"
gateway_conf "$GWL_PORT" "$GWL_ADMIN" "$POLICY" "" > "$OUT/gateway-limits.yaml"
printf '%s' "$REDIS_URL" > "$OUT/redis-url"
gateway_conf "$GWR_PORT" "$GWR_ADMIN" "$POLICY" "  limits:
    redis_url: \"file:$PWD/$OUT/redis-url\"
    redis_key_prefix: \"bench-$$:\"" > "$OUT/gateway-redis.yaml"

python3 - > "$OUT/body.json" <<'PY'
import json
print(json.dumps({"model":"bench-model","max_tokens":256,"temperature":0.2,
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
if os.getenv("SSE") == "1" then wrk.headers["x-bench-sse"] = "1" end
LUA

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
nginx -c "$PWD/$OUT/mock/nginx.conf" -p "$PWD/$OUT/mock" & pids+=($!)
nginx -c "$PWD/$OUT/nginx/nginx.conf" -p "$PWD/$OUT/nginx" & pids+=($!)
./target/release/examples/bare_pingora "127.0.0.1:$BARE_PORT" "127.0.0.1:$MOCK_PORT" "$WORKERS" > "$OUT/bare.log" 2>&1 & pids+=($!)
BENCH_PROVIDER_KEY=sk-bench GATEWAY_LOG=warn "$GATEWAY_BIN" run --config "$OUT/gateway.yaml" > "$OUT/gateway.log" 2>&1 & GW_PID=$!; pids+=($GW_PID)
BENCH_PROVIDER_KEY=sk-bench GATEWAY_LOG=warn "$GATEWAY_BIN" run --config "$OUT/gateway-limits.yaml" > "$OUT/gateway-limits.log" 2>&1 & pids+=($!)
GW_TARGETS="gateway gw_limits"
if [ $HAVE_REDIS = 1 ]; then
  BENCH_PROVIDER_KEY=sk-bench GATEWAY_LOG=warn "$GATEWAY_BIN" run --config "$OUT/gateway-redis.yaml" > "$OUT/gateway-redis.log" 2>&1 & pids+=($!)
  GW_TARGETS="$GW_TARGETS gw_redis"
fi
for admin in $GW_ADMIN $GWL_ADMIN $([ $HAVE_REDIS = 1 ] && echo $GWR_ADMIN); do
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null && break; sleep 0.1; done
done
for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$NGINX_PORT/" && break; sleep 0.1; done

# Sanity: each target answers 200 with the mock's body.
for port in $MOCK_PORT $NGINX_PORT $BARE_PORT $GW_PORT $GWL_PORT $([ $HAVE_REDIS = 1 ] && echo $GWR_PORT); do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $KEY" -H 'content-type: application/json' \
    --data-binary @"$OUT/body.json" "http://127.0.0.1:$port/v1/chat/completions")
  [ "$code" = 200 ] || { echo "target on port $port answered $code"; cat "$OUT/gateway.log"; exit 1; }
done

to_ms() { awk -v v="$1" 'BEGIN{ if (v ~ /us$/) { sub(/us$/,"",v); print v/1000 } else if (v ~ /ms$/) { sub(/ms$/,"",v); print v+0 } else if (v ~ /s$/) { sub(/s$/,"",v); print v*1000 } else print v }'; }

results="$OUT/results.tsv"
printf 'variant\tconns\ttarget\trps\tp50_ms\tp99_ms\terrors\n' > "$results"
for variant in json sse; do
  sse=0; [ $variant = sse ] && sse=1
  for c in $CONNS; do
    for target in direct nginx bare $GW_TARGETS; do
      case $target in direct) port=$MOCK_PORT;; nginx) port=$NGINX_PORT;; bare) port=$BARE_PORT;; gateway) port=$GW_PORT;;
        gw_limits) port=$GWL_PORT;; gw_redis) port=$GWR_PORT;; esac
      out=$(SSE=$sse KEY=$KEY BODY_FILE="$OUT/body.json" wrk -t1 -c"$c" -d"${DURATION}s" --latency -s "$OUT/req.lua" "http://127.0.0.1:$port/v1/chat/completions")
      echo "$out" > "$OUT/wrk-$variant-$c-$target.txt"
      rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
      p50=$(to_ms "$(echo "$out" | awk '$1=="50%" {print $2}')")
      p99=$(to_ms "$(echo "$out" | awk '$1=="99%" {print $2}')")
      errs=$(echo "$out" | awk '/Non-2xx/ {print $NF} /Socket errors/ {n=0; for(i=1;i<=NF;i++) if ($i ~ /^[0-9]+,?$/) n+=$i; print n}' | paste -sd+ | bc 2>/dev/null || echo 0)
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' $variant "$c" $target "$rps" "$p50" "$p99" "${errs:-0}" >> "$results"
    done
  done
done
RSS_KB=$(awk '/VmHWM/ {print $2}' /proc/$GW_PID/status)
if [ $HAVE_REDIS = 1 ]; then
  # Redis round trips per request: checks counted by the Redis gateway over the requests it served.
  curl -s "http://127.0.0.1:$GWR_ADMIN/metrics" > "$OUT/gateway-redis.metrics"
  awk '/^gateway_redis_checks_total/ {c+=$2} /^gateway_requests_total/ {r+=$2} END {if (r) printf "Redis gateway: %d checks for %d requests (%.3f round trips per request)\n", c, r, c/r}' "$OUT/gateway-redis.metrics"
fi

python3 - "$results" "$RSS_KB" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
rss_mib = int(sys.argv[2]) / 1024
by = {(r["variant"], r["conns"], r["target"]): r for r in rows}
print("| variant | conns | no proxy req/s | nginx req/s | bare Pingora req/s | gateway req/s | gateway/nginx req/s | nginx p50 / p99 ms | gateway p50 / p99 ms | gateway/nginx p99 | errors (nginx/gw) |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for (v, c, t), r in list(by.items()):
    if t != "direct":
        continue
    n, g, b = by[(v, c, "nginx")], by[(v, c, "gateway")], by[(v, c, "bare")]
    f = lambda x: float(x or 0)
    ratio = f(g["rps"]) / f(n["rps"]) if f(n["rps"]) else 0
    p99r = f(g["p99_ms"]) / f(n["p99_ms"]) if f(n["p99_ms"]) else 0
    print(f"| {v} | {c} | {f(r['rps']):,.0f} | {f(n['rps']):,.0f} | {f(b['rps']):,.0f} | {f(g['rps']):,.0f} | {ratio:.2f}x | {f(n['p50_ms']):.2f} / {f(n['p99_ms']):.2f} | {f(g['p50_ms']):.2f} / {f(g['p99_ms']):.2f} | {p99r:.2f}x | {n['errors']}/{g['errors']} |")
print()
print("| variant | conns | bare Pingora req/s | gateway req/s | +limits (local) req/s | +limits (Redis) req/s | limits/bare req/s | limits p99 / bare p99 | Redis/bare req/s | Redis p99 / bare p99 | limits/nginx req/s |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for (v, c, t), r in list(by.items()):
    if t != "direct":
        continue
    f = lambda x: float(x or 0)
    b, g, n = by[(v, c, "bare")], by[(v, c, "gateway")], by[(v, c, "nginx")]
    l, rd = by.get((v, c, "gw_limits"), {}), by.get((v, c, "gw_redis"), {})
    div = lambda a, b: f(a) / f(b) if f(b) else 0
    print(f"| {v} | {c} | {f(b['rps']):,.0f} | {f(g['rps']):,.0f} | {f(l.get('rps')):,.0f} | {f(rd.get('rps')):,.0f} | "
          f"{div(l.get('rps'), b['rps']):.2f}x | {div(l.get('p99_ms'), b['p99_ms']):.2f}x | "
          f"{div(rd.get('rps'), b['rps']):.2f}x | {div(rd.get('p99_ms'), b['p99_ms']):.2f}x | {div(l.get('rps'), n['rps']):.2f}x |")
print(f"\ngateway peak RSS (VmHWM): {rss_mib:.1f} MiB")
PY
