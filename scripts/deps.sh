#!/usr/bin/env bash
# Installs the system packages the build needs when they are missing: cmake (Pingora's
# zlib-ng), pkg-config and OpenSSL headers (Pingora's TLS backend), Python for the SDK tests.
# Sourced by scripts/run.sh and scripts/test.sh.
missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v pkg-config >/dev/null || missing+=(pkg-config)
[ -f /usr/include/openssl/ssl.h ] || missing+=(libssl-dev)
command -v python3 >/dev/null || missing+=(python3 python3-venv)
command -v openssl >/dev/null || missing+=(openssl)   # TLS test certificate
command -v curl >/dev/null || missing+=(curl)         # TLS / HTTP2-by-ALPN test client
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The toolchain rust-toolchain.toml pins. rustup cannot download one on these machines: when the
# pinned name is missing but the installed stable is that very version, link the name to it.
pinned=$(sed -n 's/^channel = "\(.*\)"/\1/p' rust-toolchain.toml)
if ! rustup toolchain list | grep -q "^$pinned"; then
  stable_version=$(rustc +stable --version 2>/dev/null | awk '{print $2}')
  if [ "$stable_version" = "$pinned" ]; then
    echo "==> linking toolchain $pinned to the installed stable"
    rustup toolchain link "$pinned" "$(rustc +stable --print sysroot)"
  else
    echo "rust-toolchain.toml pins $pinned but the installed stable is ${stable_version:-missing}" >&2
    exit 1
  fi
fi
