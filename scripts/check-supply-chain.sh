#!/usr/bin/env bash
# Supply-chain checks (deny.toml): RustSec advisories from the offline snapshot in
# ../shared/advisory-db with fetching disabled, licenses, crate sources (crates.io only, plus the
# vendored path crate) and bans. Installs cargo-deny (pinned, built from source) when missing.
# Called by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DENY_VERSION=0.20.2
SNAPSHOT=../shared/advisory-db
# cargo-deny keeps each database under db-path in a directory named after its URL
# (deny.toml: db-path = "target/advisory-dbs", db-urls = the RustSec repository).
DB_DIR=target/advisory-dbs/advisory-db-3157b0e258782691

die() { printf 'check-supply-chain: FAIL: %s\n' "$*" >&2; exit 1; }

if ! cargo deny --version 2>/dev/null | grep -qx "cargo-deny $CARGO_DENY_VERSION"; then
  echo "==> installing cargo-deny $CARGO_DENY_VERSION (a few minutes on 2 cores)"
  cargo install --locked "cargo-deny@$CARGO_DENY_VERSION"
fi

[ -f "$SNAPSHOT/SNAPSHOT.md" ] || die "no advisory database at $SNAPSHOT (see its SNAPSHOT.md)"
# cargo-deny reads the database from a git checkout (it takes the HEAD commit's date as the
# database's age). The snapshot is plain files, so mirror it into a one-commit repository dated
# as the snapshot says, and rebuild that mirror whenever SNAPSHOT.md changes.
if ! cmp -s "$SNAPSHOT/SNAPSHOT.md" "$DB_DIR/SNAPSHOT.md" 2>/dev/null || [ ! -d "$DB_DIR/.git" ]; then
  date=$(grep -oE '\(20[0-9]{2}-[0-9]{2}-[0-9]{2}\)' "$SNAPSHOT/SNAPSHOT.md" | head -1 | tr -d '()')
  [ -n "$date" ] || die "$SNAPSHOT/SNAPSHOT.md names no snapshot date"
  rm -rf "$DB_DIR"
  mkdir -p "$(dirname "$DB_DIR")"
  cp -r "$SNAPSHOT" "$DB_DIR"
  chmod -R u+w "$DB_DIR"
  (
    cd "$DB_DIR"
    git init -q
    git add -A
    GIT_AUTHOR_DATE="${date}T00:00:00Z" GIT_COMMITTER_DATE="${date}T00:00:00Z" \
      git -c user.name=snapshot -c user.email=snapshot@localhost commit -q -m "advisory-db snapshot $date"
  )
fi

# `cargo metadata` (under cargo-deny) needs every locked crate's manifest, for every platform.
cargo fetch --locked >/dev/null
# The vendored crates must be the path crates, never registry copies.
for crate in pingora-proxy pingora-http; do
  if awk -v n="name = \"$crate\"" '$0==n{p=1;next} p&&/^source = /{print;exit} /^$/{p=0}' Cargo.lock | grep -q .; then
    die "Cargo.lock resolves $crate from a registry, not vendor/$crate"
  fi
done
# --frozen: --locked and --offline (no advisory-db, index or crate fetch).
cargo deny --frozen check --show-stats advisories bans licenses sources
