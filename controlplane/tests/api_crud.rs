//! The REST API's semantics over a real socket: create/read/update/delete of every resource,
//! status codes, conflicts, pagination, keys shown once, provider secrets only as references.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Env;
use gateway_schema::KeyDigest;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_builds_a_full_configuration_and_tears_it_down() {
    let env = Env::start().await;
    let s = &env.server;
    let admin = env.admin();

    let (st, org) = s
        .post(
            "/api/v1/orgs",
            &admin,
            json!({"slug": "acme", "display_name": "Acme Inc"}),
        )
        .await;
    assert_eq!(st, 201, "{org}");
    assert_eq!(org["slug"], "acme");
    assert_eq!(org["display_name"], "Acme Inc");
    let (st, err) = s
        .post("/api/v1/orgs", &admin, json!({"slug": "acme"}))
        .await;
    assert_eq!(st, 409);
    assert_eq!(err["error"]["code"], "conflict");

    let (st, pol) = s
        .post(
            "/api/v1/orgs/acme/policies",
            &admin,
            json!({"slug": "standard", "allowed_models": ["gpt-4o", "claude-*"],
                   "max_request_bytes": 65536, "requests_per_minute": 60,
                   "tokens_per_minute": 100000, "monthly_budget_cents": 50000}),
        )
        .await;
    assert_eq!(st, 201, "{pol}");
    assert_eq!(pol["allowed_models"], json!(["gpt-4o", "claude-*"]));
    assert_eq!(pol["max_request_bytes"], 65536);

    let (st, proj) = s
        .post(
            "/api/v1/orgs/acme/projects",
            &admin,
            json!({"slug": "web", "policy": "standard"}),
        )
        .await;
    assert_eq!(st, 201, "{proj}");
    assert_eq!(proj["policy"], "standard");
    let (st, err) = s
        .post(
            "/api/v1/orgs/acme/projects",
            &admin,
            json!({"slug": "mobile", "policy": "nope"}),
        )
        .await;
    assert_eq!(st, 400);
    assert_eq!(err["error"]["code"], "unknown_policy");

    // A provider holds a reference, never a secret.
    let (st, err) = s
        .post(
            "/api/v1/orgs/acme/providers",
            &admin,
            json!({"slug": "openai", "kind": "openai", "base_url": "https://api.openai.com",
                   "api_key_ref": "sk-live-1234567890"}),
        )
        .await;
    assert_eq!(st, 400);
    assert_eq!(err["error"]["code"], "invalid_secret_ref");
    let (st, err) = s
        .post(
            "/api/v1/orgs/acme/providers",
            &admin,
            json!({"slug": "openai", "kind": "openai", "base_url": "https://u:p@api.openai.com",
                   "api_key_ref": "env:OPENAI_API_KEY"}),
        )
        .await;
    assert_eq!(st, 400);
    assert_eq!(err["error"]["code"], "invalid_base_url");
    let (st, prov) = s
        .post(
            "/api/v1/orgs/acme/providers",
            &admin,
            json!({"slug": "openai", "kind": "openai", "base_url": "https://api.openai.com",
                   "api_key_ref": "env:OPENAI_API_KEY"}),
        )
        .await;
    assert_eq!(st, 201, "{prov}");
    assert_eq!(prov["api_key_ref"], "env:OPENAI_API_KEY");
    let (st, prov) = s
        .put(
            "/api/v1/orgs/acme/providers/openai",
            &admin,
            json!({"kind": "openai", "base_url": "https://api.openai.com/v1",
                   "api_key_ref": "file:/run/secrets/openai"}),
        )
        .await;
    assert_eq!(st, 200, "{prov}");
    assert_eq!(prov["api_key_ref"], "file:/run/secrets/openai");

    let (st, route) = s
        .post(
            "/api/v1/orgs/acme/routes",
            &admin,
            json!({"slug": "gpt", "model": "gpt-*", "provider": "openai"}),
        )
        .await;
    assert_eq!(st, 201, "{route}");
    assert_eq!(route["provider"], "openai");
    let (st, err) = s
        .post(
            "/api/v1/orgs/acme/routes",
            &admin,
            json!({"slug": "x", "model": "a*b*", "provider": "openai"}),
        )
        .await;
    assert_eq!(st, 400);
    assert_eq!(err["error"]["code"], "invalid_model");
    let (st, err) = s
        .post(
            "/api/v1/orgs/acme/routes",
            &admin,
            json!({"slug": "y", "model": "m", "provider": "ghost"}),
        )
        .await;
    assert_eq!(st, 400);
    assert_eq!(err["error"]["code"], "unknown_provider");

    // Keys: plaintext once, digest + prefix stored.
    let (st, key) = s
        .post(
            "/api/v1/orgs/acme/projects/web/keys",
            &admin,
            json!({"name": "ci", "expires_at": common::now() + 3600}),
        )
        .await;
    assert_eq!(st, 201, "{key}");
    let plaintext = key["plaintext"].as_str().unwrap().to_owned();
    assert!(plaintext.starts_with("gwk_") && plaintext.len() == 68);
    assert_eq!(key["prefix"], plaintext[..12]);
    let key_id = key["id"].as_str().unwrap().to_owned();
    let (st, list) = s.get("/api/v1/orgs/acme/projects/web/keys", &admin).await;
    assert_eq!(st, 200);
    assert!(
        !list.to_string().contains(&plaintext[12..]),
        "list leaks the key"
    );
    assert_eq!(list["items"][0]["prefix"], plaintext[..12]);
    let (st, got) = s
        .get(
            &format!("/api/v1/orgs/acme/projects/web/keys/{key_id}"),
            &admin,
        )
        .await;
    assert_eq!(st, 200);
    assert!(got.get("plaintext").is_none());
    let (st, _) = s
        .post(
            "/api/v1/orgs/acme/projects/web/keys",
            &admin,
            json!({"expires_at": common::now() - 1}),
        )
        .await;
    assert_eq!(st, 400);
    let (st, _) = s
        .delete(
            &format!("/api/v1/orgs/acme/projects/web/keys/{key_id}"),
            &admin,
        )
        .await;
    assert_eq!(st, 204);
    let (_, got) = s
        .get(
            &format!("/api/v1/orgs/acme/projects/web/keys/{key_id}"),
            &admin,
        )
        .await;
    assert!(got["revoked_at"].as_i64().is_some());

    // The store holds the key's SHA-256 digest and prefix, never the plaintext.
    let store = controlplane::store::Store::connect(
        &gateway_schema::Secret::new(format!("sqlite://{}", env.db)),
        1,
    )
    .await
    .unwrap();
    let dump = controlplane::backup::take(&store).await.unwrap();
    let row = &dump.virtual_keys[0];
    assert_eq!(row.digest, KeyDigest::of(plaintext.as_bytes()).to_string());
    assert_eq!(row.prefix, plaintext[..12]);
    assert!(!serde_json::to_string(&dump)
        .unwrap()
        .contains(&plaintext[12..]));
    store.close().await;

    // 404 for what does not exist; conflicts on delete of things in use.
    let (st, err) = s.get("/api/v1/orgs/acme/projects/nope", &admin).await;
    assert_eq!(st, 404);
    assert_eq!(err["error"]["code"], "not_found");
    let (st, _) = s.get("/api/v1/orgs/ghost", &admin).await;
    assert_eq!(st, 404);
    let (st, err) = s.delete("/api/v1/orgs/acme/providers/openai", &admin).await;
    assert_eq!(st, 409, "{err}");
    assert_eq!(err["error"]["code"], "in_use");
    let (st, _) = s
        .delete("/api/v1/orgs/acme/policies/standard", &admin)
        .await;
    assert_eq!(st, 409);
    let (st, _) = s.delete("/api/v1/orgs/acme", &admin).await;
    assert_eq!(st, 409);

    // Tear down in order.
    for path in [
        "/api/v1/orgs/acme/routes/gpt",
        "/api/v1/orgs/acme/providers/openai",
        "/api/v1/orgs/acme/projects/web",
        "/api/v1/orgs/acme/policies/standard",
        "/api/v1/orgs/acme",
    ] {
        let (st, v) = s.delete(path, &admin).await;
        assert_eq!(st, 204, "{path}: {v}");
    }
    let (st, _) = s.delete("/api/v1/orgs/acme", &admin).await;
    assert_eq!(st, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_paginate_with_a_cursor() {
    let env = Env::start().await;
    let s = &env.server;
    let admin = env.admin();
    assert_eq!(
        s.post("/api/v1/orgs", &admin, json!({"slug": "acme"}))
            .await
            .0,
        201
    );
    for i in 0..5 {
        let (st, _) = s
            .post(
                "/api/v1/orgs/acme/projects",
                &admin,
                json!({"slug": format!("p{i}")}),
            )
            .await;
        assert_eq!(st, 201);
    }
    let mut seen = Vec::new();
    let mut path = "/api/v1/orgs/acme/projects?limit=2".to_owned();
    loop {
        let (st, page) = s.get(&path, &admin).await;
        assert_eq!(st, 200, "{page}");
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(items.iter().map(|p| p["slug"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/orgs/acme/projects?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, ["p0", "p1", "p2", "p3", "p4"]);
    let (st, err) = s.get("/api/v1/orgs/acme/projects?cursor=abc", &admin).await;
    assert_eq!(st, 400);
    assert_eq!(err["error"]["code"], "invalid_cursor");
    let (st, _) = s.get("/api/v1/orgs/acme/projects?limit=0", &admin).await;
    assert_eq!(st, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_enables_endpoint_families_and_names_a_default_provider() {
    let env = Env::start().await;
    let s = &env.server;
    let admin = env.admin();
    let (st, _) = s
        .post("/api/v1/orgs", &admin, json!({"slug": "acme"}))
        .await;
    assert_eq!(st, 201);
    let (st, _) = s
        .post(
            "/api/v1/orgs/acme/providers",
            &admin,
            json!({"slug": "openai", "kind": "openai", "base_url": "https://api.openai.com",
                   "api_key_ref": "env:OPENAI_API_KEY"}),
        )
        .await;
    assert_eq!(st, 201);

    let (st, pol) = s
        .post(
            "/api/v1/orgs/acme/policies",
            &admin,
            json!({"slug": "files", "endpoints": ["files", "batches", "files"],
                   "default_provider": "openai"}),
        )
        .await;
    assert_eq!(st, 201, "{pol}");
    assert_eq!(pol["endpoints"], json!(["files", "batches"]));
    assert_eq!(pol["default_provider"], "openai");
    let (st, pol) = s.get("/api/v1/orgs/acme/policies/files", &admin).await;
    assert_eq!(st, 200);
    assert_eq!(pol["endpoints"], json!(["files", "batches"]));

    // Replacing the settings without them means inference only again.
    let (st, pol) = s
        .put("/api/v1/orgs/acme/policies/files", &admin, json!({}))
        .await;
    assert_eq!(st, 200, "{pol}");
    assert_eq!(pol["endpoints"], serde_json::Value::Null);
    assert_eq!(pol["default_provider"], serde_json::Value::Null);

    for (body, code) in [
        (
            json!({"slug": "x", "endpoints": ["organization"]}),
            "invalid_policy",
        ),
        (
            json!({"slug": "x", "endpoints": ["Files"]}),
            "invalid_policy",
        ),
        (
            json!({"slug": "x", "default_provider": "Not A Slug"}),
            "invalid_policy",
        ),
        (
            json!({"slug": "x", "default_provider": "ghost"}),
            "unknown_provider",
        ),
    ] {
        let (st, err) = s
            .post("/api/v1/orgs/acme/policies", &admin, body.clone())
            .await;
        assert_eq!(
            (st, err["error"]["code"].as_str()),
            (400, Some(code)),
            "{body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_sets_the_response_cache_with_defaults_and_refuses_bad_cache_settings() {
    let env = Env::start().await;
    let s = &env.server;
    let admin = env.admin();
    let (st, _) = s
        .post("/api/v1/orgs", &admin, json!({"slug": "acme"}))
        .await;
    assert_eq!(st, 201);
    let (st, pol) = s
        .post(
            "/api/v1/orgs/acme/policies",
            &admin,
            json!({"slug": "cached", "cache": {"ttl_seconds": 60, "allow": ["temperature", "n", "temperature"]}}),
        )
        .await;
    assert_eq!(st, 201, "{pol}");
    assert_eq!(
        pol["cache"],
        json!({"enabled": true, "ttl_seconds": 60, "max_entry_bytes": 1048576,
               "allow": ["temperature", "n"]})
    );
    let (_, pol) = s.get("/api/v1/orgs/acme/policies/cached", &admin).await;
    assert_eq!(pol["cache"]["ttl_seconds"], 60);
    let (st, pol) = s
        .put(
            "/api/v1/orgs/acme/policies/cached",
            &admin,
            json!({"cache": {"enabled": false}}),
        )
        .await;
    assert_eq!(st, 200, "{pol}");
    assert_eq!(pol["cache"]["enabled"], false);
    let (_, pol) = s
        .put("/api/v1/orgs/acme/policies/cached", &admin, json!({}))
        .await;
    assert_eq!(pol["cache"], serde_json::Value::Null);

    for (cache, message) in [
        (json!({"ttl_seconds": 0}), "cache.ttl_seconds"),
        (json!({"ttl_seconds": 604801}), "cache.ttl_seconds"),
        (json!({"max_entry_bytes": 0}), "cache.max_entry_bytes"),
        (
            json!({"max_entry_bytes": 67108865}),
            "cache.max_entry_bytes",
        ),
        (json!({"allow": ["seed"]}), "cache.allow"),
    ] {
        let body = json!({"slug": "x", "cache": cache});
        let (st, err) = s
            .post("/api/v1/orgs/acme/policies", &admin, body.clone())
            .await;
        assert_eq!(
            (st, err["error"]["code"].as_str()),
            (400, Some("invalid_policy")),
            "{body}"
        );
        assert!(
            err["error"]["message"].as_str().unwrap().contains(message),
            "{err}"
        );
    }
    // An unknown cache field is refused, not ignored.
    let (st, _) = s
        .post(
            "/api/v1/orgs/acme/policies",
            &admin,
            json!({"slug": "x", "cache": {"ttl": 5}}),
        )
        .await;
    assert_eq!(st, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bodies_get_json_errors_with_stable_codes() {
    let env = Env::start().await;
    let s = &env.server;
    let admin = env.admin();
    let (st, err) = common::send(
        s.req(reqwest::Method::POST, "/api/v1/orgs", Some(&admin))
            .header("content-type", "application/json")
            .body("{not json"),
    )
    .await;
    assert_eq!(st, 400);
    assert_eq!(err["error"]["code"], "invalid_body");
    let (st, err) = common::send(
        s.req(reqwest::Method::POST, "/api/v1/orgs", Some(&admin))
            .body(r#"{"slug":"a"}"#),
    )
    .await;
    assert_eq!(st, 415);
    assert_eq!(err["error"]["code"], "unsupported_media_type");
    let (st, err) = s
        .post("/api/v1/orgs", &admin, json!({"slug": "a", "surprise": 1}))
        .await;
    assert_eq!(st, 400);
    assert_eq!(err["error"]["code"], "invalid_body");
    let (st, err) = s.get("/api/v1/nothing-here", &admin).await;
    assert_eq!(st, 404, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_is_served_to_authenticated_callers_and_lists_every_route() {
    let env = Env::start().await;
    let s = &env.server;
    let (st, _) = common::send(s.req(reqwest::Method::GET, "/api/v1/openapi.json", None)).await;
    assert_eq!(st, 401);
    let viewer = env.token("v", &["acme-viewers"]);
    let (st, doc) = s.get("/api/v1/openapi.json", &viewer).await;
    assert_eq!(st, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/api/v1/orgs",
        "/api/v1/orgs/{org}",
        "/api/v1/orgs/{org}/projects/{project}/keys/{key}",
        "/api/v1/orgs/{org}/policies/{policy}",
        "/api/v1/audit",
    ] {
        assert!(paths.contains_key(p), "missing {p}");
    }
    assert!(doc["components"]["schemas"]["CreateProvider"].is_object());
}
