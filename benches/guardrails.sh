#!/usr/bin/env bash
# Guardrails benchmark, two parts:
#
# 1. Throughput: the same gateway config with guardrails off and on (every built-in detector
#    plus 20 custom patterns, all `block`, none matching the benchmark's messages, so every
#    request is scanned in full and forwarded), against one fast mock upstream (nginx) on
#    loopback, at 64 connections (CONNS), both measured in this run. Target: on >= 0.85x off.
#    The bare Pingora proxy (gateway/examples/bare_pingora.rs) runs too, as in load.sh.
# 2. Linear time: gateway/examples/guardrails_linear.rs scans 1, 5 and 10 MiB bodies with a
#    hostile pattern set and prints time per MiB relative to the 1 MiB run (1.0 = linear).
#
#   benches/guardrails.sh      # DURATION=8, CONNS=64 by default; results in benches/out-guardrails/
#
# SKIP_BUILD=1 reuses the release binaries already built.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-8}
WORKERS=${WORKERS:-1}
CONNS=${CONNS:-64}
ROUNDS=${ROUNDS:-2}
OUT=benches/out-guardrails
rm -rf "$OUT"; mkdir -p "$OUT"

for tool in nginx wrk; do
  command -v $tool >/dev/null || { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk >/dev/null; break; }
done
[ "${SKIP_BUILD:-0}" = 1 ] || cargo build --release -p gateway --bin gateway --example bare_pingora --example guardrails_linear 2>&1 | tail -1

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
MOCK_PORT=$(free_port); BARE_PORT=$(free_port)
OFF_PORT=$(free_port); OFF_ADMIN=$(free_port); ON_PORT=$(free_port); ON_ADMIN=$(free_port)

JSON_RESP=$(python3 - <<'PY'
import json
r={"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"bench-model",
   "choices":[{"index":0,"message":{"role":"assistant","content":"x"*380},"logprobs":None,"finish_reason":"stop"}],
   "usage":{"prompt_tokens":250,"completion_tokens":95,"total_tokens":345}}
print(json.dumps(r))
PY
)
mkdir -p "$OUT/mock"
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
# Every built-in detector and 20 custom patterns of the kind a security team writes.
GUARDRAILS='    guardrails:
      - {id: openai-key, detector: openai_key, action: block}
      - {id: anthropic-key, detector: anthropic_key, action: block}
      - {id: aws-key, detector: aws_access_key, action: block}
      - {id: github-token, detector: github_token, action: block}
      - {id: card, detector: card_number, action: block}
      - {id: email, detector: email, action: block}
      - {id: iban, detector: iban, action: block}
      - {id: c01, pattern: "(?i)project\\s+(?:falcon|osprey|kestrel)", action: block}
      - {id: c02, pattern: "\\b\\d{3}-\\d{2}-\\d{4}\\b", action: block}
      - {id: c03, pattern: "-----BEGIN [A-Z ]*PRIVATE KEY-----", action: block}
      - {id: c04, pattern: "xox[baprs]-[A-Za-z0-9-]{10,}", action: block}
      - {id: c05, pattern: "sk_live_[0-9a-zA-Z]{24,}", action: block}
      - {id: c06, pattern: "AIza[0-9A-Za-z_-]{35}", action: block}
      - {id: c07, pattern: "eyJ[A-Za-z0-9_-]{10,}\\.eyJ[A-Za-z0-9_-]{10,}\\.[A-Za-z0-9_-]{10,}", action: block}
      - {id: c08, pattern: "(?i)\\b(?:password|passwd|pwd)\\s*[:=]\\s*\\S{6,}", action: block}
      - {id: c09, pattern: "\\b[A-Z]{2,5}-\\d{4,6}\\b", action: block}
      - {id: c10, pattern: "(?i)\\binternal\\.corp\\.example\\b", action: block}
      - {id: c11, pattern: "\\b(?:10|192\\.168)\\.\\d{1,3}\\.\\d{1,3}(?:\\.\\d{1,3})?\\b", action: block}
      - {id: c12, pattern: "(?i)confidential[^.]{0,40}do not (?:share|forward)", action: block}
      - {id: c13, pattern: "\\+?1[ -]?\\(?\\d{3}\\)?[ -]?\\d{3}[ -]?\\d{4}\\b", action: block}
      - {id: c14, pattern: "(?i)\\bssn\\s*[:#]?\\s*\\d{9}\\b", action: block}
      - {id: c15, pattern: "npm_[A-Za-z0-9]{36}", action: block}
      - {id: c16, pattern: "glpat-[A-Za-z0-9_-]{20}", action: block}
      - {id: c17, pattern: "(?i)mongodb(?:\\+srv)?://[^\\s/]+:[^\\s/@]+@", action: block}
      - {id: c18, pattern: "(?i)postgres(?:ql)?://[^\\s/]+:[^\\s/@]+@", action: block}
      - {id: c19, pattern: "\\b[0-9a-f]{40}\\b", action: block}
      - {id: c20, pattern: "(?i)\\b(?:top secret|eyes only)\\b", action: block}'
# gateway_conf PORT ADMIN_PORT PROJECT_LINES
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
gateway_conf "$OFF_PORT" "$OFF_ADMIN" "" > "$OUT/gateway-off.yaml"
gateway_conf "$ON_PORT" "$ON_ADMIN" "$GUARDRAILS" > "$OUT/gateway-on.yaml"

# The load.sh request (a system prompt and an ~860 B user message), with prose instead of
# one repeated letter so the scan sees words, digits and punctuation.
python3 - > "$OUT/body.json" <<'PY'
import json
prose = ("Please summarise the quarterly report: revenue grew 12% to 4.2 million, costs fell 3%, "
         "and the team shipped 17 features across 5 releases. Highlight risks, next steps and "
         "owners. ")
print(json.dumps({"model":"bench-model","max_tokens":256,"temperature":0.2,
  "messages":[{"role":"system","content":"You are a helpful assistant."},
              {"role":"user","content":(prose*6)[:860]}]}), end="")
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
BENCH_PROVIDER_KEY=sk-bench GATEWAY_LOG=warn ./target/release/gateway run --config "$OUT/gateway-off.yaml" > "$OUT/gateway-off.log" 2>&1 & pids+=($!)
BENCH_PROVIDER_KEY=sk-bench GATEWAY_LOG=warn ./target/release/gateway run --config "$OUT/gateway-on.yaml" > "$OUT/gateway-on.log" 2>&1 & pids+=($!)
for admin in $OFF_ADMIN $ON_ADMIN; do
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null && break; sleep 0.1; done
done
for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$BARE_PORT/" && break; sleep 0.1; done

# Sanity: all answer 200; the guarded gateway blocks a card number (so its rules are live).
for port in $BARE_PORT $OFF_PORT $ON_PORT; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $KEY" -H 'content-type: application/json' \
    --data-binary @"$OUT/body.json" "http://127.0.0.1:$port/v1/chat/completions")
  [ "$code" = 200 ] || { echo "target on port $port answered $code"; cat "$OUT"/gateway-*.log; exit 1; }
done
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $KEY" -H 'content-type: application/json' \
  --data '{"model":"bench-model","messages":[{"role":"user","content":"card 4111 1111 1111 1111"}]}' \
  "http://127.0.0.1:$ON_PORT/v1/chat/completions")
[ "$code" = 400 ] || { echo "guardrails are not blocking (got $code)"; exit 1; }

results="$OUT/results.tsv"
printf 'round\tconns\ttarget\trps\tp50_ms\tp99_ms\n' > "$results"
to_ms() { awk -v v="$1" 'BEGIN{ if (v ~ /us$/) { sub(/us$/,"",v); print v/1000 } else if (v ~ /ms$/) { sub(/ms$/,"",v); print v+0 } else if (v ~ /s$/) { sub(/s$/,"",v); print v*1000 } else print v }'; }
# Off and on alternate, ROUNDS times, so drift on a shared machine hits both alike.
for round in $(seq 1 "$ROUNDS"); do
  for c in $CONNS; do
    for target in bare off on; do
      case $target in bare) port=$BARE_PORT;; off) port=$OFF_PORT;; on) port=$ON_PORT;; esac
      out=$(KEY=$KEY BODY_FILE="$OUT/body.json" wrk -t1 -c"$c" -d"${DURATION}s" --latency -s "$OUT/req.lua" "http://127.0.0.1:$port/v1/chat/completions")
      echo "$out" > "$OUT/wrk-$round-$c-$target.txt"
      if echo "$out" | grep -q 'Non-2xx'; then echo "$target answered non-2xx:"; echo "$out"; exit 1; fi
      printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$c" $target \
        "$(echo "$out" | awk '/Requests\/sec/ {print $2}')" \
        "$(to_ms "$(echo "$out" | awk '$1=="50%" {print $2}')")" \
        "$(to_ms "$(echo "$out" | awk '$1=="99%" {print $2}')")" >> "$results"
    done
  done
done

python3 - "$results" <<'PY'
import csv, sys
from collections import defaultdict
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
acc = defaultdict(list)
for r in rows:
    acc[(r["conns"], r["target"])].append(r)
mean = lambda rs, k: sum(float(r[k] or 0) for r in rs) / len(rs)
print("| conns | bare Pingora req/s | guardrails off req/s | guardrails on req/s | on/off req/s (target >= 0.85) | off p50 / p99 ms | on p50 / p99 ms |")
print("|---|---|---|---|---|---|---|")
for c in sorted({k[0] for k in acc}, key=int):
    b, off, on = acc[(c, "bare")], acc[(c, "off")], acc[(c, "on")]
    ratio = mean(on, "rps") / mean(off, "rps") if mean(off, "rps") else 0
    verdict = "met" if ratio >= 0.85 else "NOT met"
    print(f"| {c} | {mean(b,'rps'):,.0f} | {mean(off,'rps'):,.0f} | {mean(on,'rps'):,.0f} | {ratio:.2f}x ({verdict}) | "
          f"{mean(off,'p50_ms'):.2f} / {mean(off,'p99_ms'):.2f} | {mean(on,'p50_ms'):.2f} / {mean(on,'p99_ms'):.2f} |")
PY

echo
echo "Linear-time scan (gateway/examples/guardrails_linear.rs):"
./target/release/examples/guardrails_linear | tee "$OUT/linear.txt"
