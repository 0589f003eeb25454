#!/usr/bin/env bash
# Static checks of what ships for deployment, with no cluster and no Docker engine:
#   1. every Kustomize overlay renders (`kubectl kustomize`), with placeholder secret files for
#      the secretGenerator overlays (in a temporary copy; nothing is written to the checkout);
#   2. each render validates against the Kubernetes OpenAPI schemas, offline and strict
#      (`kubernetes-validate`, Kubernetes $K8S_VERSION); the only schema allowed to be missing is
#      the External Secrets Operator's ExternalSecret (a CRD);
#   3. scripts/lib/deploy_assertions.py: default-deny NetworkPolicies in every overlay, pod
#      hardening, probes, PDBs, grace periods, provider keys only in gateways, secrets as files;
#   4. checkov on each render and on the Dockerfile: zero failed checks (each skip is justified
#      where it is declared);
#   5. the checks can fail: a render without its default-deny policy, a Dockerfile without USER
#      and a Deployment with a writable root filesystem must each be refused.
# Installs its tools (pinned) into .venv-deploy when missing. Called by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

CHECKOV_VERSION=3.3.30
KUBERNETES_VALIDATE_VERSION=1.37.0
K8S_VERSION=1.32.0
VENV=.venv-deploy

log() { printf '\n==> %s\n' "$*"; }
die() { printf 'check-deploy: FAIL: %s\n' "$*" >&2; exit 1; }

if ! command -v kubectl >/dev/null; then
  log "installing kubectl"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq kubectl >/dev/null \
    || apt-get install -y -qq kubernetes-client >/dev/null \
    || die "kubectl is needed to render the overlays and could not be installed"
fi
if ! "$VENV/bin/checkov" --version 2>/dev/null | grep -qx "$CHECKOV_VERSION" \
  || ! "$VENV/bin/kubernetes-validate" --version 2>/dev/null | grep -q "$KUBERNETES_VALIDATE_VERSION"; then
  log "installing checkov $CHECKOV_VERSION and kubernetes-validate $KUBERNETES_VALIDATE_VERSION into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "checkov==$CHECKOV_VERSION" "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r deploy/kubernetes "$work/k"
checks=0
checkov() {
  "$VENV/bin/checkov" --compact --quiet --skip-download "$@"
}

overlays=()
for dir in "$work"/k/overlays/*/; do overlays+=("$(basename "$dir")"); done
[ ${#overlays[@]} -ge 4 ] || die "expected at least 4 overlays, found ${#overlays[@]}"

for o in "${overlays[@]}"; do
  log "overlay $o"
  odir="$work/k/overlays/$o"
  # Placeholder values for every file a secretGenerator reads (`key=secrets/file`).
  for f in $(grep -oE '=secrets/[A-Za-z0-9._-]+' "$odir/kustomization.yaml" | cut -c2- || true); do
    mkdir -p "$odir/secrets"
    printf 'placeholder-%s' "$(basename "$f")" > "$odir/$f"
  done
  out="$work/$o.yaml"
  kubectl kustomize "$odir" > "$out" || die "$o: kubectl kustomize failed"
  checks=$((checks + 1))

  "$VENV/bin/kubernetes-validate" -k "$K8S_VERSION" --strict --quiet "$out" > "$work/validate.log" 2>&1 \
    || { cat "$work/validate.log"; die "$o: schema validation failed"; }
  if grep -v "Couldn't find schema for kind ExternalSecret with api version external-secrets.io/v1" \
      "$work/validate.log" | grep -q .; then
    cat "$work/validate.log"; die "$o: schema validation reported something unexpected"
  fi
  echo "ok   $o: valid against Kubernetes $K8S_VERSION (strict)"
  checks=$((checks + 1))

  "$VENV/bin/python" scripts/lib/deploy_assertions.py "$out" || die "$o: deployment rules broken"
  checks=$((checks + 1))

  checkov -f "$out" --framework kubernetes > "$work/checkov.log" 2>&1 \
    || { cat "$work/checkov.log"; die "$o: checkov failed"; }
  grep -q "Failed checks: 0," "$work/checkov.log" || { cat "$work/checkov.log"; die "$o: checkov ran no checks"; }
  echo "ok   $o: checkov $(grep -oE 'Passed checks: [0-9]+, Failed checks: 0, Skipped checks: [0-9]+' "$work/checkov.log")"
  checks=$((checks + 1))
done

log "Dockerfile"
checkov -f Dockerfile --framework dockerfile > "$work/checkov.log" 2>&1 \
  || { cat "$work/checkov.log"; die "Dockerfile: checkov failed"; }
grep -q "Failed checks: 0," "$work/checkov.log" || { cat "$work/checkov.log"; die "Dockerfile: checkov ran no checks"; }
echo "ok   Dockerfile: checkov $(grep -oE 'Passed checks: [0-9]+, Failed checks: 0, Skipped checks: [0-9]+' "$work/checkov.log")"
checks=$((checks + 1))

log "the checks refuse broken input"
"$VENV/bin/python" - "$work/${overlays[0]}.yaml" "$work/no-deny.yaml" "$work/writable.yaml" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
no_deny = [d for d in docs if not (d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "default-deny-all")]
assert len(no_deny) == len(docs) - 1, "the render has no default-deny-all policy to remove"
yaml.safe_dump_all(no_deny, open(sys.argv[2], "w"))
for d in docs:
    if d["kind"] == "Deployment":
        d["metadata"].pop("annotations", None)
        for c in d["spec"]["template"]["spec"]["containers"]:
            c["securityContext"]["readOnlyRootFilesystem"] = False
yaml.safe_dump_all(docs, open(sys.argv[3], "w"))
PY
if "$VENV/bin/python" scripts/lib/deploy_assertions.py "$work/no-deny.yaml" >/dev/null; then
  die "a render without its default-deny policy passed the assertions"
fi
echo "ok   a render without default-deny-all is refused"
if checkov -f "$work/writable.yaml" --framework kubernetes --check CKV_K8S_22 >/dev/null 2>&1; then
  die "checkov passed a Deployment with a writable root filesystem"
fi
echo "ok   checkov refuses a writable root filesystem (CKV_K8S_22)"
grep -v '^USER ' Dockerfile > "$work/Dockerfile"
if checkov -f "$work/Dockerfile" --framework dockerfile --check CKV_DOCKER_3 >/dev/null 2>&1; then
  die "checkov passed a Dockerfile without USER"
fi
echo "ok   checkov refuses a Dockerfile without USER (CKV_DOCKER_3)"
checks=$((checks + 3))

echo
echo "check-deploy: $checks passed, 0 failed (${#overlays[@]} overlays, Kubernetes $K8S_VERSION)"
