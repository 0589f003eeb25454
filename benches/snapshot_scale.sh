#!/usr/bin/env bash
# Snapshot scale: KEYS virtual keys (default 100,000) across PROJECTS projects (default 1,000)
# compiled, signed and streamed by the real control plane to a real gateway under a concurrent
# load of CONNS connections; prints compile time, snapshot size, time to apply, the gateway's
# extra memory and the failed requests (the run fails if any request failed).
#
#   benches/snapshot_scale.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p gateway --bin gateway --example snapshot_scale 2>&1 | tail -1
exec target/release/examples/snapshot_scale
