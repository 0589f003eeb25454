"""Assertions on rendered Kubernetes manifests that schema validation and checkov do not make.

Usage: deploy_assertions.py RENDERED.yaml
Exits 1 naming every broken rule. Rules:
  - a default-deny NetworkPolicy (podSelector {}, policyTypes Ingress and Egress, no rules)
    exists in the namespace of every Deployment;
  - every Deployment's pods: runAsNonRoot, readOnlyRootFilesystem, no privilege escalation,
    all capabilities dropped, seccomp RuntimeDefault, no service-account token, requests and
    limits, liveness /healthz and readiness /readyz on the admin port;
  - terminationGracePeriodSeconds > preStop sleep + the binary's drain grace (read from the
    config file in the ConfigMap it mounts);
  - a PodDisruptionBudget selects every Deployment;
  - the provider-key Secret is mounted only into the gateway; no secret reaches an env var;
  - Secret volumes are mounted read-only.
"""

import sys

import yaml

PROVIDER_KEYS = "ai-gateway-provider-keys"


def fail(errors, msg):
    errors.append(msg)


def is_default_deny(np):
    spec = np.get("spec") or {}
    return (
        spec.get("podSelector") in ({}, None)
        and sorted(spec.get("policyTypes") or []) == ["Egress", "Ingress"]
        and not spec.get("ingress")
        and not spec.get("egress")
    )


def selects(selector, labels):
    match = (selector or {}).get("matchLabels") or {}
    return all(labels.get(k) == v for k, v in match.items())


def drain_grace(docs, pod_spec, container):
    """The drain grace from the binary's config file in its mounted ConfigMap."""
    cm_names = {
        v["name"]: v["configMap"]["name"]
        for v in pod_spec.get("volumes") or []
        if "configMap" in v
    }
    for m in container.get("volumeMounts") or []:
        cm_name = cm_names.get(m["name"])
        if not cm_name:
            continue
        for d in docs:
            if d.get("kind") == "ConfigMap" and d["metadata"]["name"] == cm_name:
                for text in (d.get("data") or {}).values():
                    server = (yaml.safe_load(text) or {}).get("server") or {}
                    for key in ("shutdown_grace_seconds", "shutdown_grace_secs"):
                        if key in server:
                            return server[key]
    return None


def check(docs):
    errors = []
    deny_namespaces = {
        d["metadata"].get("namespace")
        for d in docs
        if d.get("kind") == "NetworkPolicy" and is_default_deny(d)
    }
    deployments = [d for d in docs if d.get("kind") == "Deployment"]
    if not deployments:
        fail(errors, "no Deployment rendered")
    pdbs = [d for d in docs if d.get("kind") == "PodDisruptionBudget"]
    for dep in deployments:
        name = dep["metadata"]["name"]
        ns = dep["metadata"].get("namespace")
        if ns not in deny_namespaces:
            fail(errors, f"{name}: no default-deny NetworkPolicy in namespace {ns}")
        tmpl = dep["spec"]["template"]
        labels = tmpl["metadata"].get("labels") or {}
        if not any(
            p["metadata"].get("namespace") == ns and selects(p["spec"].get("selector"), labels)
            for p in pdbs
        ):
            fail(errors, f"{name}: no PodDisruptionBudget selects it")
        pod = tmpl["spec"]
        psc = pod.get("securityContext") or {}
        if pod.get("automountServiceAccountToken") is not False:
            fail(errors, f"{name}: service-account token is mounted")
        if psc.get("runAsNonRoot") is not True:
            fail(errors, f"{name}: pod runAsNonRoot is not true")
        if (psc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
            fail(errors, f"{name}: pod seccompProfile is not RuntimeDefault")
        secret_volumes = {
            v["name"]: v["secret"]["secretName"] for v in pod.get("volumes") or [] if "secret" in v
        }
        is_gateway = labels.get("app.kubernetes.io/name") == "gateway"
        if PROVIDER_KEYS in secret_volumes.values() and not is_gateway:
            fail(errors, f"{name}: provider keys mounted into a pod that is not a gateway")
        for c in pod.get("containers") or []:
            cname = f"{name}/{c['name']}"
            sc = c.get("securityContext") or {}
            if sc.get("readOnlyRootFilesystem") is not True:
                fail(errors, f"{cname}: root filesystem is writable")
            if sc.get("allowPrivilegeEscalation") is not False:
                fail(errors, f"{cname}: privilege escalation allowed")
            if (sc.get("capabilities") or {}).get("drop") != ["ALL"]:
                fail(errors, f"{cname}: capabilities not all dropped")
            if sc.get("runAsNonRoot") is not True:
                fail(errors, f"{cname}: runAsNonRoot is not true")
            res = c.get("resources") or {}
            for kind in ("requests", "limits"):
                if not {"cpu", "memory"} <= set((res.get(kind) or {}).keys()):
                    fail(errors, f"{cname}: resources.{kind} lacks cpu or memory")
            for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
                get = (c.get(probe) or {}).get("httpGet") or {}
                if get.get("path") != path or get.get("port") != "admin":
                    fail(errors, f"{cname}: {probe} is not GET {path} on the admin port")
            for e in c.get("env") or []:
                if "secretKeyRef" in (e.get("valueFrom") or {}):
                    fail(errors, f"{cname}: secret {e['name']} passed as an env var")
            for m in c.get("volumeMounts") or []:
                if m["name"] in secret_volumes and m.get("readOnly") is not True:
                    fail(errors, f"{cname}: secret volume {m['name']} is writable")
            grace = drain_grace(docs, pod, c)
            pre_stop = (((c.get("lifecycle") or {}).get("preStop") or {}).get("sleep") or {}).get(
                "seconds", 0
            )
            term = pod.get("terminationGracePeriodSeconds", 30)
            if grace is None:
                fail(errors, f"{cname}: no drain grace found in its mounted config")
            elif term <= pre_stop + grace:
                fail(
                    errors,
                    f"{cname}: terminationGracePeriodSeconds {term} is not longer than "
                    f"preStop {pre_stop} + drain grace {grace}",
                )
    return errors


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    errors = check(docs)
    for e in errors:
        print(f"FAIL {sys.argv[1]}: {e}")
    if errors:
        sys.exit(1)
    kinds = sorted({d["kind"] for d in docs})
    print(f"ok   {sys.argv[1]}: {len(docs)} objects ({', '.join(kinds)}), all rules hold")


if __name__ == "__main__":
    main()
