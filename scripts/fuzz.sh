#!/usr/bin/env bash
# Runs every fuzz target (or the ones named) for SECONDS each with cargo-fuzz (libFuzzer).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]        default: 60 s, every target in fuzz/Cargo.toml
#   SANITIZER=none scripts/fuzz.sh 300            without AddressSanitizer (about 2x faster)
#   JOBS=2 scripts/fuzz.sh 600 oidc_token         parallel libFuzzer workers for one target
#   NO_BUILD=1 scripts/fuzz.sh 60                 run the binaries already built
#
# How cargo-fuzz runs here: only the stable toolchain pinned in rust-toolchain.toml is used.
# cargo-fuzz needs unstable compiler flags (-Zsanitizer=address, and the sanitizer-coverage
# passes); RUSTC_BOOTSTRAP=1 lets this stable rustc accept them (it ships the ASan runtime).
# The fuzz crate is a workspace member whose libFuzzer binaries need the `libfuzzer` feature,
# so ordinary builds never see them; `cargo test -p gateway-fuzz` replays the stored inputs.
# `cargo fuzz build` builds every target once; the binaries then run directly, so a source
# change during a long run does not trigger a rebuild between targets.
#
# Inputs found while fuzzing go to target/fuzz-corpus/TARGET (not committed); the committed
# seeds are fuzz/corpus/TARGET. A failing input lands in target/fuzz-artifacts/TARGET/: fix the
# bug, then copy the input to fuzz/regressions/TARGET/ so the replay test keeps it fixed.
# Runs under `nice`: the machine is shared.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
secs=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^gateway-fuzz$')
fi
sanitizer=${SANITIZER:-address}
jobs=${JOBS:-1}
bin_dir=target/fuzz/x86_64-unknown-linux-gnu/release

if [ -z "${NO_BUILD:-}" ]; then
  if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
    echo "==> installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install --locked "cargo-fuzz@$CARGO_FUZZ_VERSION"
  fi
  export RUSTC_BOOTSTRAP=1
  # The workspace's release profile is fat LTO with one codegen unit (for the shipped
  # binaries); for nine instrumented fuzz binaries that only costs link time.
  export CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16
  echo "==> building ${#targets[@]} targets (sanitizer: $sanitizer)"
  # A target directory of its own: instrumented builds never evict the ordinary ones.
  nice -n 10 cargo fuzz build --features libfuzzer --sanitizer "$sanitizer" --release \
    --debug-assertions --target-dir target/fuzz
fi

mkdir -p target/fuzz-logs
summary=()
for t in "${targets[@]}"; do
  echo "==> $t for ${secs}s"
  [ -x "$bin_dir/$t" ] || { echo "no fuzz binary $bin_dir/$t: build first" >&2; exit 1; }
  mkdir -p "target/fuzz-corpus/$t" "target/fuzz-artifacts/$t"
  status=ok
  parallel=()
  # -jobs makes libFuzzer write fuzz-N.log files into the working directory: only when asked.
  [ "$jobs" -gt 1 ] && parallel=(-jobs="$jobs" -workers="$jobs")
  nice -n 10 "$bin_dir/$t" "target/fuzz-corpus/$t" "fuzz/corpus/$t" \
    -artifact_prefix="target/fuzz-artifacts/$t/" -max_total_time="$secs" \
    -print_final_stats=1 "${parallel[@]}" \
    > "target/fuzz-logs/$t.log" 2>&1 || status=FAILED
  execs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "target/fuzz-logs/$t.log" \
    | awk '{s += $2} END {print s + 0}')
  cov=$(grep -oE 'cov: [0-9]+' "target/fuzz-logs/$t.log" | tail -1 | awk '{print $2}')
  corpus=$(find "target/fuzz-corpus/$t" -type f | wc -l)
  summary+=("$(printf '%-16s %-7s %12s execs  cov %-6s corpus %s' "$t" "$status" "$execs" "${cov:-?}" "$corpus")")
  if [ "$status" != ok ]; then
    tail -40 "target/fuzz-logs/$t.log"
  fi
done
printf '\n==> summary (%ss per target, logs in target/fuzz-logs/)\n' "$secs"
printf '%s\n' "${summary[@]}"
! printf '%s\n' "${summary[@]}" | grep -q FAILED
