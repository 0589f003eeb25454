//! Every role against every endpoint. The matrix below is the README's RBAC table; a test
//! also checks that it covers every operation of the OpenAPI document, so a new endpoint
//! cannot be added without deciding (and testing) who may call it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;

use common::Env;
use reqwest::Method;
use serde_json::{json, Value};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Need {
    Any,
    Read,
    Write,
    OrgAdmin,
    CreateOrg,
    Audit,
    /// Viewer or up on `*` (the gateway list spans every org).
    GlobalRead,
    /// Auditor or admin on the org (or on `*`): guardrail block records.
    OrgAudit,
}

/// (role name, groups)
const ROLES: &[(&str, &[&str])] = &[
    ("global-admin", &["platform-admins"]),
    ("org-admin", &["acme-admins"]),
    ("editor", &["acme-editors"]),
    ("viewer", &["acme-viewers"]),
    ("auditor", &["auditors"]),
    ("stranger", &[]),
];

/// The status a role gets for a need, when allowed returning `ok`.
fn expected(role: &str, need: Need, ok: u16) -> u16 {
    let allowed = match need {
        Need::Any => true,
        Need::Read => matches!(role, "global-admin" | "org-admin" | "editor" | "viewer"),
        Need::Write => matches!(role, "global-admin" | "org-admin" | "editor"),
        Need::OrgAdmin => matches!(role, "global-admin" | "org-admin"),
        Need::CreateOrg => role == "global-admin",
        Need::Audit => matches!(role, "global-admin" | "auditor"),
        Need::GlobalRead => role == "global-admin",
        Need::OrgAudit => matches!(role, "global-admin" | "org-admin" | "auditor"),
    };
    if allowed {
        return ok;
    }
    // No role at all on the org: 404 (its existence is not revealed). Otherwise 403.
    let org_scoped = matches!(
        need,
        Need::Read | Need::Write | Need::OrgAdmin | Need::OrgAudit
    );
    if org_scoped && role == "stranger" {
        404
    } else {
        403
    }
}

struct Case {
    method: Method,
    /// Path template (as in the OpenAPI document).
    template: &'static str,
    /// Concrete path; `{n}` is replaced by a fresh suffix per attempt.
    path: &'static str,
    body: Option<Value>,
    need: Need,
    ok: u16,
    /// Requests the global admin makes first (`{n}` replaced too).
    prep: Vec<(Method, &'static str, Value)>,
}

fn case(
    method: Method,
    template: &'static str,
    path: &'static str,
    body: Option<Value>,
    need: Need,
    ok: u16,
) -> Case {
    Case {
        method,
        template,
        path,
        body,
        need,
        ok,
        prep: Vec::new(),
    }
}

fn matrix() -> Vec<Case> {
    use Method as M;
    use Need::*;
    vec![
        case(M::GET, "/api/v1/orgs", "/api/v1/orgs", None, Any, 200),
        case(
            M::POST,
            "/api/v1/orgs",
            "/api/v1/orgs",
            Some(json!({"slug": "org-{n}"})),
            CreateOrg,
            201,
        ),
        case(
            M::GET,
            "/api/v1/orgs/{org}",
            "/api/v1/orgs/acme",
            None,
            Read,
            200,
        ),
        // acme is not empty: an authorized delete reaches the store and gets 409.
        case(
            M::DELETE,
            "/api/v1/orgs/{org}",
            "/api/v1/orgs/acme",
            None,
            OrgAdmin,
            409,
        ),
        case(
            M::GET,
            "/api/v1/orgs/{org}/projects",
            "/api/v1/orgs/acme/projects",
            None,
            Read,
            200,
        ),
        case(
            M::POST,
            "/api/v1/orgs/{org}/projects",
            "/api/v1/orgs/acme/projects",
            Some(json!({"slug": "p-{n}"})),
            Write,
            201,
        ),
        case(
            M::GET,
            "/api/v1/orgs/{org}/projects/{project}",
            "/api/v1/orgs/acme/projects/web",
            None,
            Read,
            200,
        ),
        case(
            M::PUT,
            "/api/v1/orgs/{org}/projects/{project}",
            "/api/v1/orgs/acme/projects/web",
            Some(json!({"display_name": "Web {n}"})),
            Write,
            200,
        ),
        Case {
            prep: vec![(
                M::POST,
                "/api/v1/orgs/acme/projects",
                json!({"slug": "d-{n}"}),
            )],
            ..case(
                M::DELETE,
                "/api/v1/orgs/{org}/projects/{project}",
                "/api/v1/orgs/acme/projects/d-{n}",
                None,
                Write,
                204,
            )
        },
        case(
            M::GET,
            "/api/v1/orgs/{org}/providers",
            "/api/v1/orgs/acme/providers",
            None,
            Read,
            200,
        ),
        case(
            M::POST,
            "/api/v1/orgs/{org}/providers",
            "/api/v1/orgs/acme/providers",
            Some(
                json!({"slug": "pr-{n}", "kind": "openai-compatible", "base_url": "http://127.0.0.1:11434"}),
            ),
            Write,
            201,
        ),
        case(
            M::GET,
            "/api/v1/orgs/{org}/providers/{provider}",
            "/api/v1/orgs/acme/providers/openai",
            None,
            Read,
            200,
        ),
        case(
            M::PUT,
            "/api/v1/orgs/{org}/providers/{provider}",
            "/api/v1/orgs/acme/providers/openai",
            Some(
                json!({"kind": "openai", "base_url": "https://api.openai.com", "api_key_ref": "env:OPENAI_API_KEY"}),
            ),
            Write,
            200,
        ),
        Case {
            prep: vec![(
                M::POST,
                "/api/v1/orgs/acme/providers",
                json!({"slug": "dp-{n}", "kind": "openai-compatible", "base_url": "http://127.0.0.1:1"}),
            )],
            ..case(
                M::DELETE,
                "/api/v1/orgs/{org}/providers/{provider}",
                "/api/v1/orgs/acme/providers/dp-{n}",
                None,
                Write,
                204,
            )
        },
        case(
            M::GET,
            "/api/v1/orgs/{org}/routes",
            "/api/v1/orgs/acme/routes",
            None,
            Read,
            200,
        ),
        case(
            M::POST,
            "/api/v1/orgs/{org}/routes",
            "/api/v1/orgs/acme/routes",
            Some(json!({"slug": "r-{n}", "model": "m-{n}", "provider": "openai"})),
            Write,
            201,
        ),
        case(
            M::GET,
            "/api/v1/orgs/{org}/routes/{route}",
            "/api/v1/orgs/acme/routes/gpt",
            None,
            Read,
            200,
        ),
        Case {
            prep: vec![(
                M::POST,
                "/api/v1/orgs/acme/routes",
                json!({"slug": "dr-{n}", "model": "x", "provider": "openai"}),
            )],
            ..case(
                M::DELETE,
                "/api/v1/orgs/{org}/routes/{route}",
                "/api/v1/orgs/acme/routes/dr-{n}",
                None,
                Write,
                204,
            )
        },
        case(
            M::GET,
            "/api/v1/orgs/{org}/policies",
            "/api/v1/orgs/acme/policies",
            None,
            Read,
            200,
        ),
        case(
            M::POST,
            "/api/v1/orgs/{org}/policies",
            "/api/v1/orgs/acme/policies",
            Some(json!({"slug": "pol-{n}", "requests_per_minute": 10})),
            Write,
            201,
        ),
        case(
            M::GET,
            "/api/v1/orgs/{org}/policies/{policy}",
            "/api/v1/orgs/acme/policies/std",
            None,
            Read,
            200,
        ),
        case(
            M::PUT,
            "/api/v1/orgs/{org}/policies/{policy}",
            "/api/v1/orgs/acme/policies/std",
            Some(json!({"tokens_per_minute": 1000})),
            Write,
            200,
        ),
        Case {
            prep: vec![(
                M::POST,
                "/api/v1/orgs/acme/policies",
                json!({"slug": "dpol-{n}"}),
            )],
            ..case(
                M::DELETE,
                "/api/v1/orgs/{org}/policies/{policy}",
                "/api/v1/orgs/acme/policies/dpol-{n}",
                None,
                Write,
                204,
            )
        },
        case(
            M::GET,
            "/api/v1/orgs/{org}/projects/{project}/keys",
            "/api/v1/orgs/acme/projects/web/keys",
            None,
            Read,
            200,
        ),
        case(
            M::POST,
            "/api/v1/orgs/{org}/projects/{project}/keys",
            "/api/v1/orgs/acme/projects/web/keys",
            Some(json!({"name": "k-{n}"})),
            Write,
            201,
        ),
        case(
            M::GET,
            "/api/v1/orgs/{org}/projects/{project}/keys/{key}",
            "/api/v1/orgs/acme/projects/web/keys/KEYID",
            None,
            Read,
            200,
        ),
        case(
            M::DELETE,
            "/api/v1/orgs/{org}/projects/{project}/keys/{key}",
            "/api/v1/orgs/acme/projects/web/keys/KEYID",
            None,
            Write,
            204,
        ),
        case(M::GET, "/api/v1/audit", "/api/v1/audit", None, Audit, 200),
        case(
            M::GET,
            "/api/v1/gateways",
            "/api/v1/gateways",
            None,
            GlobalRead,
            200,
        ),
        case(
            M::GET,
            "/api/v1/orgs/{org}/usage",
            "/api/v1/orgs/acme/usage?group_by=project,day",
            None,
            Read,
            200,
        ),
        case(
            M::GET,
            "/api/v1/orgs/{org}/guardrail-blocks",
            "/api/v1/orgs/acme/guardrail-blocks?project=web",
            None,
            OrgAudit,
            200,
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_against_every_endpoint() {
    let env = Env::start().await;
    let s = &env.server;
    let admin = env.admin();
    for (m, p, b) in [
        (Method::POST, "/api/v1/orgs", json!({"slug": "acme"})),
        (
            Method::POST,
            "/api/v1/orgs/acme/policies",
            json!({"slug": "std"}),
        ),
        (
            Method::POST,
            "/api/v1/orgs/acme/projects",
            json!({"slug": "web", "policy": "std"}),
        ),
        (
            Method::POST,
            "/api/v1/orgs/acme/providers",
            json!({"slug": "openai", "kind": "openai", "base_url": "https://api.openai.com", "api_key_ref": "env:K"}),
        ),
        (
            Method::POST,
            "/api/v1/orgs/acme/routes",
            json!({"slug": "gpt", "model": "gpt-*", "provider": "openai"}),
        ),
    ] {
        let (st, v) = common::send(s.req(m, p, Some(&admin)).json(&b)).await;
        assert_eq!(st, 201, "{p}: {v}");
    }
    let (_, key) = s
        .post("/api/v1/orgs/acme/projects/web/keys", &admin, json!({}))
        .await;
    let key_id = key["id"].as_str().unwrap().to_owned();

    let mut n = 0;
    let mut failures = Vec::new();
    for c in matrix() {
        for (role, groups) in ROLES {
            n += 1;
            let fill = |t: &str| t.replace("{n}", &n.to_string()).replace("KEYID", &key_id);
            for (m, p, b) in &c.prep {
                let body: Value = serde_json::from_str(&fill(&b.to_string())).unwrap();
                let (st, v) =
                    common::send(s.req(m.clone(), &fill(p), Some(&admin)).json(&body)).await;
                assert!(st < 300, "prep {p}: {st} {v}");
            }
            let token = env.token(&format!("{role}-user"), groups);
            let mut req = s.req(c.method.clone(), &fill(c.path), Some(&token));
            if let Some(b) = &c.body {
                let body: Value = serde_json::from_str(&fill(&b.to_string())).unwrap();
                req = req.json(&body);
            }
            let rid = format!("matrix-{n}");
            let (st, v) = common::send(req.header("x-request-id", &rid)).await;
            let want = expected(role, c.need, c.ok);
            if st != want {
                failures.push(format!(
                    "{} {} as {role}: got {st}, want {want} ({v})",
                    c.method, c.path
                ));
            }
            if want == 403 || want == 404 {
                let rec = s.audit_for(&admin, &rid).await;
                match rec {
                    Some(r) if r["outcome"] == "denied" => {}
                    other => failures.push(format!(
                        "{} {} as {role}: denial not audited: {other:?}",
                        c.method, c.path
                    )),
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "RBAC matrix mismatches:\n{}",
        failures.join("\n")
    );

    // Strangers and auditors list no orgs; the org admin sees only acme.
    let (_, v) = s.get("/api/v1/orgs", &env.token("s", &[])).await;
    assert_eq!(v["items"], json!([]));
    let (_, v) = s.get("/api/v1/orgs", &env.token("a", &["auditors"])).await;
    assert_eq!(v["items"], json!([]));
    let (_, v) = s
        .get("/api/v1/orgs", &env.token("oa", &["acme-admins"]))
        .await;
    let slugs: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["slug"].as_str().unwrap())
        .collect();
    assert_eq!(slugs, ["acme"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_covers_every_documented_operation() {
    let env = Env::start().await;
    let (st, doc) = env.server.get("/api/v1/openapi.json", &env.admin()).await;
    assert_eq!(st, 200);
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                documented.insert(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    let tested: BTreeSet<String> = matrix()
        .iter()
        .map(|c| format!("{} {}", c.method, c.template))
        .collect();
    assert_eq!(documented, tested);
}
