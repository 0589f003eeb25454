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
