//! The API answers inside its own contract: every error is JSON in the documented shape with a
//! stable code, and the OpenAPI document lists the statuses and slug rules the server enforces.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{raw, Env};
use serde_json::Value;

const SLUG_PATTERN: &str = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$";

/// Asserts a raw HTTP response is JSON in the error shape with `code`.
fn assert_error_shape(text: &str, code: &str) {
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "not JSON: {text}"
    );
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(v["error"]["code"], code, "{text}");
    assert!(v["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
}

fn request(method: &str, path: &str, token: &str, extra: &str, body: &str) -> Vec<u8> {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\nConnection: close\r\nContent-Length: {}\r\n{extra}\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The `slug` property of an object schema, also inside `allOf` (flattened bodies).
fn slug_property(schema: &Value) -> &Value {
    if let Some(p) = schema["properties"].get("slug") {
        return p;
    }
    schema["allOf"]
        .as_array()
        .into_iter()
        .flatten()
        .map(slug_property)
        .find(|p| !p.is_null())
        .unwrap_or(&Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_string_errors_are_json_invalid_query() {
    let env = Env::start().await;
    let admin = env.admin();
    for path in [
        "/api/v1/orgs?limit=abc",
        "/api/v1/orgs?limit=-1",
        "/api/v1/audit?since_ms=yesterday",
    ] {
        let (st, text) = raw(env.server.addr, &request("GET", path, &admin, "", "")).await;
        assert_eq!(st, 400, "{path}: {text}");
        assert_error_shape(&text, "invalid_query");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_are_json_not_found_and_wrong_methods_json_405() {
    let env = Env::start().await;
    let admin = env.admin();
    let (st, text) = raw(
        env.server.addr,
        &request("GET", "/api/v1/nothing-here", &admin, "", ""),
    )
    .await;
    assert_eq!(st, 404, "{text}");
    assert_error_shape(&text, "not_found");

    let (st, text) = raw(env.server.addr, &request("GET", "/", &admin, "", "")).await;
    assert_eq!(st, 404, "{text}");
    assert_error_shape(&text, "not_found");

    let (st, text) = raw(
        env.server.addr,
        &request(
            "PATCH",
            "/api/v1/orgs",
            &admin,
            "Content-Type: application/json\r\n",
            "{}",
        ),
    )
    .await;
    assert_eq!(st, 405, "{text}");
    assert_error_shape(&text, "method_not_allowed");
    assert!(text.to_ascii_lowercase().contains("allow: "), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_errors_are_json_400_and_415() {
    let env = Env::start().await;
    let admin = env.admin();
    let (st, text) = raw(
        env.server.addr,
        &request(
            "POST",
            "/api/v1/orgs",
            &admin,
            "Content-Type: text/plain\r\n",
            "{}",
        ),
    )
    .await;
    assert_eq!(st, 415, "{text}");
    assert_error_shape(&text, "unsupported_media_type");

    let (st, text) = raw(
        env.server.addr,
        &request(
            "POST",
            "/api/v1/orgs",
            &admin,
            "Content-Type: application/json\r\n",
            "{\"slug\":",
        ),
    )
    .await;
    assert_eq!(st, 400, "{text}");
    assert_error_shape(&text, "invalid_body");

    // A JSON array is not an object, even where every field is optional (serde alone would
    // read `[null, null]` as a struct of two nulls).
    for (method, path) in [
        ("PUT", "/api/v1/orgs/acme/projects/web"),
        ("PUT", "/api/v1/orgs/acme/policies/open"),
        ("POST", "/api/v1/orgs/acme/projects/web/keys"),
    ] {
        let (st, text) = raw(
            env.server.addr,
            &request(
                method,
                path,
                &admin,
                "Content-Type: application/json\r\n",
                "[null, null]",
            ),
        )
        .await;
        assert_eq!(st, 400, "{method} {path}: {text}");
        assert_error_shape(&text, "invalid_body");
        assert!(text.contains("must be a JSON object"), "{text}");
    }

    let (st, text) = raw(
        env.server.addr,
        &request(
            "POST",
            "/api/v1/orgs",
            &admin,
            "Content-Type: application/json\r\n",
            "{\"slug\":\"\"}",
        ),
    )
    .await;
    assert_eq!(st, 400, "{text}");
    assert_error_shape(&text, "invalid_slug");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_errors_are_json_invalid_slug() {
    let env = Env::start().await;
    let admin = env.admin();
    for path in ["/api/v1/orgs/Upper", "/api/v1/orgs/%FF", "/api/v1/orgs/-x"] {
        let (st, text) = raw(env.server.addr, &request("GET", path, &admin, "", "")).await;
        assert_eq!(st, 400, "{path}: {text}");
        assert_error_shape(&text, "invalid_slug");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_lists_error_statuses_and_slug_rules() {
    let env = Env::start().await;
    let (st, doc) = env.server.get("/api/v1/openapi.json", &env.admin()).await;
    assert_eq!(st, 200);
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if !["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                continue;
            }
            operations += 1;
            let responses = op["responses"].as_object().unwrap();
            let has = |s: &str| responses.contains_key(s);
            let here = format!("{method} {path}");
            for s in ["400", "401", "403"] {
                assert!(has(s), "{here} does not document {s}");
            }
            if path.contains('{') {
                assert!(has("404"), "{here} does not document 404");
            }
            if method != "get" {
                for s in ["409", "413", "429", "503"] {
                    assert!(has(s), "{here} does not document {s}");
                }
            }
            if op.get("requestBody").is_some() {
                assert!(has("415"), "{here} does not document 415");
            }
            for p in op["parameters"].as_array().into_iter().flatten() {
                if p["in"] == "path" {
                    assert_eq!(p["schema"]["pattern"], SLUG_PATTERN, "{here}: {p}");
                    assert_eq!(p["schema"]["minLength"], 1, "{here}: {p}");
                    assert_eq!(p["schema"]["maxLength"], 63, "{here}: {p}");
                }
            }
        }
    }
    assert!(operations > 20, "only {operations} operations documented");
    let schemas = &doc["components"]["schemas"];
    for body in [
        "CreateOrg",
        "CreateProject",
        "CreateProvider",
        "CreateRoute",
        "CreatePolicy",
    ] {
        let slug = slug_property(&schemas[body]);
        assert_eq!(slug["pattern"], SLUG_PATTERN, "{body}: {slug}");
        assert_eq!(slug["minLength"], 1, "{body}: {slug}");
        assert_eq!(slug["maxLength"], 63, "{body}: {slug}");
    }
}
