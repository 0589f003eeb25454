//! Tenant isolation on the provider's side: the endpoint allowlist and per-project ownership
//! of provider objects, against a mock provider that keeps real state for whoever holds its
//! key (every project behind the gateway holds the same one).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/cp.rs"]
mod cp;

use common::stateful::{form_field, StatefulUpstream};
use common::*;
use serde_json::{json, Value};

const ALPHA_KEY: &str = "gwk_alpha_key_for_isolation_tests_000000000000000000000000000000";
const BETA_KEY: &str = "gwk_beta_key_for_isolation_tests_0000000000000000000000000000000";
const PLAIN_KEY: &str = "gwk_plain_key_for_isolation_tests_000000000000000000000000000000";
const GREEDY_KEY: &str = "gwk_greedy_key_for_isolation_tests_00000000000000000000000000000";
const BOUNDARY: &str = "----gwtestboundary7MA4YWxkTrZu0gW";

/// Two tenants with the same stateful families, one with none, one with every family.
fn config(upstream: std::net::SocketAddr) -> String {
    format!(
        r#"
providers:
  - name: openai
    kind: openai
    base_url: "http://{upstream}"
    api_key: "env:TEST_OPENAI_KEY"
  - name: anthropic
    kind: anthropic
    base_url: "http://{upstream}"
    api_key: "env:TEST_ANTHROPIC_KEY"
routes:
  - model: "gpt-*"
    provider: openai
  - model: "whisper-1"
    provider: openai
  - model: "transcribe"
    provider: openai
    upstream_model: "whisper-1"
  - model: "claude-*"
    provider: anthropic
projects:
  - slug: alpha
    endpoints: [files, uploads, batches, vector_stores, stored_responses, message_batches]
    keys: [{{digest: "{alpha}"}}]
  - slug: beta
    endpoints: [files, uploads, batches, vector_stores, stored_responses, message_batches]
    keys: [{{digest: "{beta}"}}]
  - slug: plain
    keys: [{{digest: "{plain}"}}]
  - slug: greedy
    endpoints: [files, uploads, batches, vector_stores, stored_responses, fine_tuning, message_batches, anthropic_files]
    default_provider: openai
    keys: [{{digest: "{greedy}"}}]
"#,
        alpha = digest(ALPHA_KEY),
        beta = digest(BETA_KEY),
        plain = digest(PLAIN_KEY),
        greedy = digest(GREEDY_KEY),
    )
}

/// A multipart form body: text fields, then one file part.
fn form(fields: &[(&str, &str)], file: Option<(&str, &[u8])>) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes(),
        );
    }
    if let Some((filename, content)) = file {
        out.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
        );
        out.extend_from_slice(content);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    out
}

async fn send(
    gw: &GatewayProc,
    method: &str,
    path: &str,
    key: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut req = client()
        .request(method.parse().unwrap(), gw.url(path))
        .bearer_auth(key);
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn upload_file(gw: &GatewayProc, path: &str, key: &str, content: &[u8]) -> (u16, Value) {
    let resp = client()
        .post(gw.url(path))
        .bearer_auth(key)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(form(
            &[("purpose", "batch")],
            Some(("input.jsonl", content)),
        ))
        .send()
        .await
        .unwrap();
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

fn ids(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .map(|d| {
            d.iter()
                .filter_map(|i| i["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn project_b_cannot_list_read_use_or_delete_project_a_objects() {
    let up = StatefulUpstream::start().await;
    let gw = GatewayProc::start(&config(up.addr)).await;

    // A creates a file (through /v1, no model: the only OpenAI provider), a batch on it and
    // a stored response.
    let (status, file) = upload_file(&gw, "/v1/files", ALPHA_KEY, b"{\"custom_id\":\"1\"}\n").await;
    assert_eq!(status, 200, "{file}");
    let file_id = file["id"].as_str().unwrap().to_owned();
    let (status, batch) = send(
        &gw,
        "POST",
        "/v1/batches",
        ALPHA_KEY,
        Some(&json!({"input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h"})),
    )
    .await;
    assert_eq!(status, 200, "{batch}");
    let batch_id = batch["id"].as_str().unwrap().to_owned();
    let output_file_id = batch["output_file_id"].as_str().unwrap().to_owned();
    let (status, response) = send(
        &gw,
        "POST",
        "/v1/responses",
        ALPHA_KEY,
        Some(&json!({"model": "gpt-4o", "input": "hi"})),
    )
    .await;
    assert_eq!(status, 200, "{response}");
    let response_id = response["id"].as_str().unwrap().to_owned();

    // B lists: the provider answers with A's objects, the gateway shows B none of them.
    let before = up.count();
    let (status, files) = send(&gw, "GET", "/v1/files", BETA_KEY, None).await;
    assert_eq!(status, 200);
    assert_eq!(ids(&files), Vec::<String>::new(), "{files}");
    assert_eq!(files["first_id"], Value::Null);
    let (status, batches) = send(&gw, "GET", "/v1/batches", BETA_KEY, None).await;
    assert_eq!(status, 200);
    assert_eq!(ids(&batches), Vec::<String>::new(), "{batches}");
    assert_eq!(
        up.count(),
        before + 2,
        "lists do reach the provider, filtered"
    );

    // B names A's objects: each answer is exactly the one for an id that does not exist, and
    // none reaches the provider.
    let before = up.count();
    let (missing_status, missing) =
        send(&gw, "GET", "/v1/files/file-doesnotexist", BETA_KEY, None).await;
    assert_eq!(missing_status, 404);
    assert_eq!(missing["error"]["code"], "object_not_found");
    let attempts: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", format!("/v1/files/{file_id}"), None),
        ("GET", format!("/v1/files/{file_id}/content"), None),
        ("DELETE", format!("/v1/files/{file_id}"), None),
        ("GET", format!("/openai/v1/files/{file_id}"), None),
        ("GET", format!("/v1/files/{output_file_id}/content"), None),
        ("GET", format!("/v1/batches/{batch_id}"), None),
        ("POST", format!("/v1/batches/{batch_id}/cancel"), None),
        (
            "POST",
            "/v1/batches".into(),
            Some(
                json!({"input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h"}),
            ),
        ),
        ("GET", format!("/v1/responses/{response_id}"), None),
        ("DELETE", format!("/v1/responses/{response_id}"), None),
        (
            "POST",
            "/v1/responses".into(),
            Some(json!({"model": "gpt-4o", "input": "more", "previous_response_id": response_id})),
        ),
        (
            "POST",
            "/v1/chat/completions".into(),
            Some(
                json!({"model": "gpt-4o", "messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": file_id}}]}]}),
            ),
        ),
    ];
    for (method, path, body) in &attempts {
        let (status, v) = send(&gw, method, path, BETA_KEY, body.as_ref()).await;
        assert_eq!((status, &v), (404, &missing), "{method} {path}");
    }
    assert_eq!(
        up.count(),
        before,
        "no direct id access reached the provider"
    );
    assert!(
        up.has_file(OPENAI_UPSTREAM_KEY, &file_id),
        "B's delete never ran"
    );

    // A can do all of it.
    let (_, files) = send(&gw, "GET", "/v1/files", ALPHA_KEY, None).await;
    let mut listed = ids(&files);
    listed.sort();
    let mut expected = vec![file_id.clone(), output_file_id.clone()];
    expected.sort();
    assert_eq!(listed, expected);
    let (_, batches) = send(&gw, "GET", "/v1/batches", ALPHA_KEY, None).await;
    assert_eq!(ids(&batches), std::slice::from_ref(&batch_id));
    for path in [
        format!("/v1/files/{file_id}"),
        format!("/openai/v1/files/{file_id}"),
        format!("/v1/files/{output_file_id}/content"),
        format!("/v1/batches/{batch_id}"),
        format!("/v1/responses/{response_id}"),
    ] {
        let (status, v) = send(&gw, "GET", &path, ALPHA_KEY, None).await;
        assert_eq!(status, 200, "{path}: {v}");
    }
    let (status, v) = send(
        &gw,
        "POST",
        "/v1/responses",
        ALPHA_KEY,
        Some(&json!({"model": "gpt-4o", "input": "more", "previous_response_id": response_id})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let (status, _) = send(
        &gw,
        "DELETE",
        &format!("/v1/files/{file_id}"),
        ALPHA_KEY,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert!(!up.has_file(OPENAI_UPSTREAM_KEY, &file_id));
    // A deleted object is forgotten: asking again is answered like any unknown id.
    let before = up.count();
    let (status, v) = send(&gw, "GET", &format!("/v1/files/{file_id}"), ALPHA_KEY, None).await;
    assert_eq!((status, &v), (404, &missing));
    assert_eq!(up.count(), before);

    // An object made directly at the provider belongs to no project.
    let direct = up.create_file_directly(OPENAI_UPSTREAM_KEY);
    let (status, _) = send(&gw, "GET", &format!("/v1/files/{direct}"), ALPHA_KEY, None).await;
    assert_eq!(status, 404);
    let (_, files) = send(&gw, "GET", "/v1/files", ALPHA_KEY, None).await;
    assert!(!ids(&files).contains(&direct));
}

#[tokio::test]
async fn every_object_a_body_names_is_checked_however_it_is_spelled() {
    let up = StatefulUpstream::start().await;
    let gw = GatewayProc::start(&config(up.addr)).await;
    let (_, theirs) = upload_file(&gw, "/v1/files", ALPHA_KEY, b"{}\n").await;
    let theirs = theirs["id"].as_str().unwrap().to_owned();
    let (_, mine) = upload_file(&gw, "/v1/files", BETA_KEY, b"{}\n").await;
    let mine = mine["id"].as_str().unwrap().to_owned();
    let batch = |first: &str, second: Option<&str>| {
        let mut body = format!(
            r#"{{"endpoint":"/v1/chat/completions","completion_window":"24h","input_file_id":"{first}""#
        );
        if let Some(s) = second {
            body.push_str(&format!(r#","input_file_id":"{s}""#));
        }
        body.push('}');
        client()
            .post(gw.url("/v1/batches"))
            .bearer_auth(BETA_KEY)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let before = up.count();
    // A duplicated key: whichever value the provider reads, both must be the project's.
    let resp = batch(&mine, Some(&theirs)).await.unwrap();
    assert_eq!(error_code(resp).await, (404, "object_not_found".into()));
    // An escaped key is the same key.
    let escaped = format!(
        r#"{{"endpoint":"/v1/chat/completions","completion_window":"24h","input\u005ffile_id":"{theirs}"}}"#
    );
    let resp = client()
        .post(gw.url("/v1/batches"))
        .bearer_auth(BETA_KEY)
        .header("content-type", "application/json")
        .body(escaped)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(resp).await, (404, "object_not_found".into()));
    // Too deep to check is refused, not forwarded.
    let deep = format!(
        r#"{{"model":"gpt-4o","messages":[],"x":{}{{"file_id":"{theirs}"}}{}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    let resp = client()
        .post(gw.url("/openai/v1/chat/completions"))
        .bearer_auth(BETA_KEY)
        .header("content-type", "application/json")
        .body(deep)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(resp).await, (400, "invalid_json".into()));
    assert_eq!(up.count(), before);
    // The project's own file alone passes.
    let resp = batch(&mine, None).await.unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn filtered_lists_are_well_framed_over_http1_and_http2() {
    let up = StatefulUpstream::start().await;
    let gw = GatewayProc::start(&config(up.addr)).await;
    let (_, mine) = upload_file(&gw, "/v1/files", ALPHA_KEY, b"{}\n").await;
    let (_, _theirs) = upload_file(&gw, "/v1/files", BETA_KEY, b"{}\n").await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    for (client, version) in [
        (reqwest::Client::new(), reqwest::Version::HTTP_11),
        (h2, reqwest::Version::HTTP_2),
    ] {
        // Twice on one connection: the rewritten body must not break keep-alive framing.
        for _ in 0..2 {
            let resp = client
                .get(gw.url("/v1/files"))
                .bearer_auth(ALPHA_KEY)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.version(), version);
            assert_eq!(resp.status(), 200);
            assert!(resp.headers().get("content-length").is_none());
            let v: Value = resp.json().await.unwrap();
            assert_eq!(ids(&v), [mine["id"].as_str().unwrap()]);
        }
    }
}

#[tokio::test]
async fn uploaded_files_and_vector_stores_stay_with_their_project() {
    let up = StatefulUpstream::start().await;
    let gw = GatewayProc::start(&config(up.addr)).await;

    // A uploads a file in parts; the completed upload's file is A's.
    let (status, upload) = send(
        &gw,
        "POST",
        "/v1/uploads",
        ALPHA_KEY,
        Some(&json!({"purpose": "assistants", "filename": "notes.txt", "bytes": 6, "mime_type": "text/plain"})),
    )
    .await;
    assert_eq!(status, 200, "{upload}");
    let upload_id = upload["id"].as_str().unwrap().to_owned();
    let part = client()
        .post(gw.url(&format!("/v1/uploads/{upload_id}/parts")))
        .bearer_auth(ALPHA_KEY)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(form(&[], Some(("blob", b"hello\n"))))
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 200);
    let (status, v) = send(
        &gw,
        "POST",
        &format!("/v1/uploads/{upload_id}/parts"),
        BETA_KEY,
        None,
    )
    .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (404, Some("object_not_found"))
    );
    let (status, done) = send(
        &gw,
        "POST",
        &format!("/v1/uploads/{upload_id}/complete"),
        ALPHA_KEY,
        Some(&json!({"part_ids": []})),
    )
    .await;
    assert_eq!(status, 200, "{done}");
    let file_id = done["file"]["id"].as_str().unwrap().to_owned();
    let (status, _) = send(&gw, "GET", &format!("/v1/files/{file_id}"), ALPHA_KEY, None).await;
    assert_eq!(status, 200);

    // A's vector store with A's file.
    let (status, vs) = send(
        &gw,
        "POST",
        "/v1/vector_stores",
        ALPHA_KEY,
        Some(&json!({"name": "a", "file_ids": [file_id]})),
    )
    .await;
    assert_eq!(status, 200, "{vs}");
    let vs_a = vs["id"].as_str().unwrap().to_owned();
    let (status, _) = send(
        &gw,
        "GET",
        &format!("/v1/vector_stores/{vs_a}/files/{file_id}"),
        ALPHA_KEY,
        None,
    )
    .await;
    assert_eq!(status, 200);

    // B has a vector store of its own, but cannot reach A's, nor put A's file in its own.
    let (status, vs) = send(
        &gw,
        "POST",
        "/v1/vector_stores",
        BETA_KEY,
        Some(&json!({"name": "b"})),
    )
    .await;
    assert_eq!(status, 200, "{vs}");
    let vs_b = vs["id"].as_str().unwrap().to_owned();
    let before = up.count();
    for (method, path, body) in [
        ("GET", format!("/v1/vector_stores/{vs_a}"), None),
        (
            "GET",
            format!("/v1/vector_stores/{vs_a}/files/{file_id}"),
            None,
        ),
        (
            "GET",
            format!("/v1/vector_stores/{vs_b}/files/{file_id}"),
            None,
        ),
        (
            "POST",
            format!("/v1/vector_stores/{vs_b}/files"),
            Some(json!({"file_id": file_id})),
        ),
        (
            "POST",
            "/v1/vector_stores".to_owned(),
            Some(json!({"name": "c", "file_ids": [file_id]})),
        ),
        (
            "POST",
            "/v1/responses".to_owned(),
            Some(
                json!({"model": "gpt-4o", "input": "hi", "tools": [{"type": "file_search", "vector_store_ids": [vs_a]}]}),
            ),
        ),
    ] {
        let (status, v) = send(&gw, method, &path, BETA_KEY, body.as_ref()).await;
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (404, Some("object_not_found")),
            "{method} {path}"
        );
    }
    assert_eq!(up.count(), before);
}

#[tokio::test]
async fn a_streamed_stored_response_is_owned_by_its_creator() {
    let up = StatefulUpstream::start().await;
    let gw = GatewayProc::start(&config(up.addr)).await;
    let resp = client()
        .post(gw.url("/v1/responses"))
        .bearer_auth(ALPHA_KEY)
        .json(&json!({"model": "gpt-4o", "input": "hi", "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let id = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .find_map(|v| v["response"]["id"].as_str().map(str::to_owned))
        .unwrap();
    let (status, _) = send(&gw, "GET", &format!("/v1/responses/{id}"), ALPHA_KEY, None).await;
    assert_eq!(status, 200);
    let (status, _) = send(&gw, "GET", &format!("/v1/responses/{id}"), BETA_KEY, None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn anthropic_message_batches_are_owned_per_project() {
    let up = StatefulUpstream::start().await;
    let gw = GatewayProc::start(&config(up.addr)).await;
    let body = json!({"requests": [{"custom_id": "1", "params": {"model": "claude-3-5-haiku-latest", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}}]});
    let (status, batch) = send(
        &gw,
        "POST",
        "/anthropic/v1/messages/batches",
        ALPHA_KEY,
        Some(&body),
    )
    .await;
    assert_eq!(status, 200, "{batch}");
    let id = batch["id"].as_str().unwrap().to_owned();

    let before = up.count();
    let (status, v) = send(
        &gw,
        "GET",
        &format!("/anthropic/v1/messages/batches/{id}"),
        BETA_KEY,
        None,
    )
    .await;
    assert_eq!(status, 404);
    // Anthropic's shape, as Anthropic answers a missing batch.
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "not_found_error");
    assert_eq!(up.count(), before);
    let (_, list) = send(&gw, "GET", "/anthropic/v1/messages/batches", BETA_KEY, None).await;
    assert_eq!(ids(&list), Vec::<String>::new());

    let (status, _) = send(
        &gw,
        "GET",
        &format!("/anthropic/v1/messages/batches/{id}"),
        ALPHA_KEY,
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (_, list) = send(
        &gw,
        "GET",
        "/anthropic/v1/messages/batches",
        ALPHA_KEY,
        None,
    )
    .await;
    assert_eq!(ids(&list), [id]);
}

#[tokio::test]
async fn denied_endpoints_never_reach_the_provider() {
    let up = StatefulUpstream::start().await;
    let gw = GatewayProc::start(&config(up.addr)).await;
    for (method, path) in [
        ("GET", "/openai/v1/files"),
        ("POST", "/openai/v1/files"),
        ("GET", "/openai/v1/batches"),
        ("GET", "/openai/v1/fine_tuning/jobs"),
        ("GET", "/openai/v1/responses/resp_123"),
        ("DELETE", "/openai/v1/responses/resp_123"),
        ("GET", "/openai/v1/vector_stores"),
        ("POST", "/openai/v1/assistants"),
        ("GET", "/anthropic/v1/messages/batches"),
        ("GET", "/anthropic/v1/files"),
        ("GET", "/openai/v1/organization/users"),
        ("GET", "/v1/files"),
        ("GET", "/v1/batches"),
        // Bypass attempts: case, trailing and double slashes, HEAD, unknown methods.
        ("GET", "/openai/V1/files"),
        ("GET", "/openai/v1/Files"),
        ("GET", "/openai/v1/files/"),
        ("GET", "/openai/v1//files"),
        ("HEAD", "/openai/v1/models"),
        ("PUT", "/openai/v1/chat/completions"),
        ("GET", "/openai/v1/models/"),
        ("POST", "/openai/v1/chat/completions/"),
    ] {
        let resp = client()
            .request(method.parse().unwrap(), gw.url(path))
            .bearer_auth(PLAIN_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 403, "{method} {path}");
        if method != "HEAD" {
            let (_, code) = error_code(resp).await;
            assert_eq!(code, "endpoint_not_allowed", "{method} {path}");
        }
    }
    // A stored response needs the family, so does chaining one.
    for body in [
        json!({"model": "gpt-4o", "input": "hi", "store": true}),
        json!({"model": "gpt-4o", "input": "hi", "previous_response_id": "resp_1"}),
    ] {
        let (status, v) = send(&gw, "POST", "/v1/responses", PLAIN_KEY, Some(&body)).await;
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (403, Some("endpoint_not_allowed"))
        );
    }
    assert_eq!(
        up.count(),
        0,
        "{:?}",
        up.requests()
            .iter()
            .map(|r| &r.path_and_query)
            .collect::<Vec<_>>()
    );

    // Inference still passes, on both surfaces, with the query string unchanged.
    let (status, _) = send(
        &gw,
        "POST",
        "/v1/chat/completions",
        PLAIN_KEY,
        Some(&chat_body("gpt-4o", false)),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = send(
        &gw,
        "POST",
        "/openai/v1/chat/completions?x=1",
        PLAIN_KEY,
        Some(&chat_body("gpt-4o", false)),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        up.requests().last().unwrap().path_and_query,
        "/v1/chat/completions?x=1"
    );
    let (status, _) = send(
        &gw,
        "POST",
        "/v1/responses",
        PLAIN_KEY,
        Some(&json!({"model": "gpt-4o", "input": "hi"})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(up.count(), 3);
}

#[tokio::test]
async fn admin_endpoints_are_refused_even_when_a_policy_enables_every_family() {
    let up = StatefulUpstream::start().await;
    let gw = GatewayProc::start(&config(up.addr)).await;
    for (method, path) in [
        ("GET", "/openai/v1/organization/users"),
        ("POST", "/openai/v1/organization/admin_api_keys"),
        ("GET", "/openai/v1/organization/projects"),
        ("GET", "/openai/v1/organization/audit_logs"),
        ("GET", "/openai/v1/organization/costs"),
        ("GET", "/openai/v1/organization/usage/completions"),
        ("GET", "/openai/v1/Organization/invites"),
        ("GET", "/anthropic/v1/organizations/users"),
        ("GET", "/anthropic/v1/organizations/api_keys"),
        ("GET", "/v1/organization/users"),
        ("GET", "/openai/v1/dashboard/billing/usage"),
    ] {
        let resp = client()
            .request(method.parse().unwrap(), gw.url(path))
            .bearer_auth(GREEDY_KEY)
            .send()
            .await
            .unwrap();
        let (status, code) = error_code(resp).await;
        assert_eq!(
            (status, code.as_str()),
            (403, "endpoint_not_allowed"),
            "{method} {path}"
        );
    }
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn multipart_requests_are_routed_by_their_model_field() {
    let up = StatefulUpstream::start().await;
    let gw = GatewayProc::start(&config(up.addr)).await;
    let audio = vec![7u8; 200_000];
    let transcribe = |model: &'static str| {
        let body = form(
            &[("model", model), ("language", "en")],
            Some(("a.wav", &audio)),
        );
        client()
            .post(gw.url("/v1/audio/transcriptions"))
            .bearer_auth(PLAIN_KEY)
            .header(
                "content-type",
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .body(body)
            .send()
    };
    let resp = transcribe("whisper-1").await.unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["text"], "transcribed 200000 bytes with whisper-1");

    // An alias is rewritten inside the form; the file part arrives intact.
    let resp = transcribe("transcribe").await.unwrap();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["text"], "transcribed 200000 bytes with whisper-1");
    let seen = up.requests().pop().unwrap();
    assert_eq!(
        form_field(&seen.body, "model").as_deref(),
        Some("whisper-1")
    );
    assert_eq!(form_field(&seen.body, "language").as_deref(), Some("en"));

    let resp = transcribe("no-such-model").await.unwrap();
    assert_eq!(error_code(resp).await, (404, "model_not_found".into()));

    // Two model fields could be read differently upstream: refused.
    let body = form(
        &[("model", "whisper-1"), ("model", "gpt-4o")],
        Some(("a.wav", b"x")),
    );
    let resp = client()
        .post(gw.url("/v1/audio/transcriptions"))
        .bearer_auth(PLAIN_KEY)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(resp).await, (400, "invalid_multipart".into()));
    assert_eq!(up.count(), 2);
}

#[tokio::test]
async fn model_retrieve_answers_from_the_route_table() {
    let up = StatefulUpstream::start().await;
    let gw = GatewayProc::start(&config(up.addr)).await;
    let (status, v) = send(&gw, "GET", "/v1/models/gpt-4o", PLAIN_KEY, None).await;
    assert_eq!(status, 200);
    assert_eq!(
        v,
        json!({"id": "gpt-4o", "object": "model", "created": 0, "owned_by": "openai"})
    );
    let (status, v) = send(&gw, "GET", "/v1/models/whisper-1", PLAIN_KEY, None).await;
    assert_eq!((status, v["owned_by"].as_str()), (200, Some("openai")));
    let (status, v) = send(&gw, "GET", "/v1/models/llama-3", PLAIN_KEY, None).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (404, Some("model_not_found"))
    );
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn a_request_without_a_model_needs_a_default_provider() {
    let up = StatefulUpstream::start().await;
    // Two OpenAI providers and no default: the gateway does not guess.
    let cfg = format!(
        r#"
providers:
  - name: openai
    kind: openai
    base_url: "http://{addr}"
    api_key: "env:TEST_OPENAI_KEY"
  - name: openai-eu
    kind: openai
    base_url: "http://{addr}"
    api_key: "env:TEST_OPENAI_KEY"
projects:
  - slug: undecided
    endpoints: [files]
    keys: [{{digest: "{alpha}"}}]
  - slug: decided
    endpoints: [files]
    default_provider: openai-eu
    keys: [{{digest: "{beta}"}}]
"#,
        addr = up.addr,
        alpha = digest(ALPHA_KEY),
        beta = digest(BETA_KEY),
    );
    let gw = GatewayProc::start(&cfg).await;
    let (status, v) = send(&gw, "GET", "/v1/files", ALPHA_KEY, None).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("no_default_provider"))
    );
    assert_eq!(up.count(), 0);
    let (status, v) = send(&gw, "GET", "/v1/files", BETA_KEY, None).await;
    assert_eq!(status, 200, "{v}");
    // An inference endpoint still needs its model.
    let (status, v) = send(
        &gw,
        "POST",
        "/v1/chat/completions",
        BETA_KEY,
        Some(&json!({"messages": []})),
    )
    .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (400, Some("missing_model"))
    );
}

/// A `server:` section line pointing the gateway at a Redis URL kept in a file.
fn redis_server_extra(name: &str, url: &str) -> String {
    let path = std::env::temp_dir().join(format!("gw-redis-url-{}-{name}", std::process::id()));
    std::fs::write(&path, url).unwrap();
    format!("  redis_url: \"file:{}\"\n", path.display())
}

#[tokio::test]
async fn ownership_is_shared_between_gateways_through_redis() {
    let up = StatefulUpstream::start().await;
    let extra = redis_server_extra("shared", "redis://127.0.0.1:6379");
    let gw1 = GatewayProc::start_with(&config(up.addr), &extra).await;
    let gw2 = GatewayProc::start_with(&config(up.addr), &extra).await;

    let (status, file) = upload_file(&gw1, "/v1/files", ALPHA_KEY, b"{}\n").await;
    assert_eq!(status, 200, "{file}");
    let id = file["id"].as_str().unwrap().to_owned();

    // The creator reaches it through the other gateway (once the record has landed).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (status, _) = send(&gw2, "GET", &format!("/v1/files/{id}"), ALPHA_KEY, None).await;
        if status == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the record never reached gateway 2"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (_, list) = send(&gw2, "GET", "/v1/files", ALPHA_KEY, None).await;
    assert_eq!(ids(&list), std::slice::from_ref(&id));

    // Another project cannot, on either gateway.
    for gw in [&gw1, &gw2] {
        let (status, v) = send(gw, "GET", &format!("/v1/files/{id}"), BETA_KEY, None).await;
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (404, Some("object_not_found"))
        );
        let (_, list) = send(gw, "GET", "/v1/files", BETA_KEY, None).await;
        assert_eq!(ids(&list), Vec::<String>::new());
    }
}

#[tokio::test]
async fn an_unreachable_redis_fails_closed() {
    let up = StatefulUpstream::start().await;
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let extra = redis_server_extra("down", &format!("redis://127.0.0.1:{port}"));
    let gw = GatewayProc::start_with(&config(up.addr), &extra).await;

    // Creating works and the creator can use the object on this gateway (kept locally)...
    let (status, file) = upload_file(&gw, "/v1/files", ALPHA_KEY, b"{}\n").await;
    assert_eq!(status, 200, "{file}");
    let id = file["id"].as_str().unwrap().to_owned();
    let (status, _) = send(&gw, "GET", &format!("/v1/files/{id}"), ALPHA_KEY, None).await;
    assert_eq!(status, 200);
    // ...but what the gateway cannot check is refused, never forwarded.
    let before = up.count();
    let (status, v) = send(&gw, "GET", "/v1/files/file-unknown", BETA_KEY, None).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (503, Some("ownership_unavailable"))
    );
    let (status, v) = send(&gw, "GET", "/v1/files", ALPHA_KEY, None).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (503, Some("ownership_unavailable"))
    );
    assert_eq!(up.count(), before);
    // Inference does not depend on Redis.
    let (status, _) = send(
        &gw,
        "POST",
        "/v1/chat/completions",
        ALPHA_KEY,
        Some(&chat_body("gpt-4o", false)),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn same_named_projects_of_two_orgs_do_not_share_objects() {
    let up = StatefulUpstream::start().await;
    // Both orgs name their provider `openai`, point it at the same account and call their
    // project `team`: only the org tells them apart.
    let org = |slug: &str, key: &str| {
        format!(
            r#"
  - slug: {slug}
    providers:
      - name: openai
        kind: openai
        base_url: "http://{addr}"
        api_key: "env:TEST_OPENAI_KEY"
    projects:
      - slug: team
        endpoints: [files]
        keys: [{{digest: "{digest}"}}]"#,
            addr = up.addr,
            digest = digest(key),
        )
    };
    let cfg = format!(
        "orgs:{}{}\n",
        org("acme", ALPHA_KEY),
        org("globex", BETA_KEY)
    );
    let gw = GatewayProc::start(&cfg).await;
    let (status, file) = upload_file(&gw, "/v1/files", ALPHA_KEY, b"{}\n").await;
    assert_eq!(status, 200, "{file}");
    let id = file["id"].as_str().unwrap().to_owned();
    let before = up.count();
    for path in [format!("/v1/files/{id}"), format!("/openai/v1/files/{id}")] {
        let (status, v) = send(&gw, "GET", &path, BETA_KEY, None).await;
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (404, Some("object_not_found")),
            "{path}"
        );
    }
    assert_eq!(up.count(), before);
    let (_, list) = send(&gw, "GET", "/v1/files", BETA_KEY, None).await;
    assert_eq!(ids(&list), Vec::<String>::new());
    let (status, _) = send(
        &gw,
        "GET",
        &format!("/openai/v1/files/{id}"),
        ALPHA_KEY,
        None,
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_control_plane_policy_enables_families_and_ownership_applies() {
    let up = StatefulUpstream::start().await;
    let secrets = cp::Secrets::new();
    let cp = cp::ControlPlane::start(&secrets).await;
    cp.seed_org("acme", "openai", up.addr).await;
    cp.post(
        "/api/v1/orgs/acme/policies",
        json!({"slug": "files", "endpoints": ["files"], "default_provider": "openai"}),
    )
    .await;
    for project in ["one", "two"] {
        cp.post(
            "/api/v1/orgs/acme/projects",
            json!({"slug": project, "policy": "files"}),
        )
        .await;
    }
    let (one, _) = cp.mint("acme", "one").await;
    let (two, _) = cp.mint("acme", "two").await;
    let (plain, _) = cp.mint("acme", "app").await;
    let lkg = secrets.dir.join("iso-lkg.json");
    let gw = GatewayProc::launch("", "", &secrets.gateway_args(&cp.url, &lkg, "iso"), true).await;
    cp::eventually(
        std::time::Duration::from_secs(5),
        "the keys work",
        || async { send(&gw, "GET", "/v1/files", &one, None).await.0 == 200 },
    )
    .await;

    let (status, file) = upload_file(&gw, "/v1/files", &one, b"{}\n").await;
    assert_eq!(status, 200, "{file}");
    let id = file["id"].as_str().unwrap().to_owned();
    let (status, _) = send(&gw, "GET", &format!("/v1/files/{id}"), &one, None).await;
    assert_eq!(status, 200);
    let (status, v) = send(&gw, "GET", &format!("/v1/files/{id}"), &two, None).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (404, Some("object_not_found"))
    );
    // The seeded project's policy enables nothing.
    let (status, v) = send(&gw, "GET", "/v1/files", &plain, None).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (403, Some("endpoint_not_allowed"))
    );
}

#[test]
fn check_config_refuses_an_unusable_redis_url_without_printing_it() {
    let dir = std::env::temp_dir().join(format!("gw-iso-cc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let url_file = dir.join("redis-url");
    std::fs::write(&url_file, "redis-with-SECRET-password@nowhere").unwrap();
    let cfg = dir.join("gateway.yaml");
    std::fs::write(
        &cfg,
        format!("server:\n  redis_url: \"file:{}\"\n", url_file.display()),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["check-config", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("server.redis_url"), "{stderr}");
    assert!(!stderr.contains("SECRET"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `server:` lines for control-plane mode against `cp` with ownership records reported (and
/// seeded back), the spool and last-known-good file in `dir`.
fn objects_server_extra(cp: &cp::ControlPlane, secrets: &cp::Secrets, dir: &str) -> String {
    let d = secrets.dir.join(dir);
    std::fs::create_dir_all(&d).unwrap();
    format!(
        "  control_plane:\n    url: \"{url}\"\n    internal_secret: \"file:{secret}\"\n    public_key: \"file:{pubkey}\"\n    last_known_good: \"{d}/lkg.json\"\n    objects_ingest_token: \"file:{objects}\"\n    ingest:\n      spool_dir: \"{d}/spool\"\n      flush_ms: 50\n",
        url = cp.url,
        secret = secrets.secret_file.display(),
        pubkey = secrets.pub_file.display(),
        objects = secrets.objects_token_file.display(),
        d = d.display(),
    )
}

/// A control plane with org `acme`, provider `openai` at `up`, and projects `one` and `two`
/// whose policy enables files and batches; returns their keys.
async fn objects_control_plane(
    secrets: &cp::Secrets,
    up: std::net::SocketAddr,
) -> (cp::ControlPlane, String, String) {
    let cp = cp::ControlPlane::start(secrets).await;
    cp.seed_org("acme", "openai", up).await;
    cp.post(
        "/api/v1/orgs/acme/policies",
        json!({"slug": "files", "endpoints": ["files", "batches"], "default_provider": "openai"}),
    )
    .await;
    for project in ["one", "two"] {
        cp.post(
            "/api/v1/orgs/acme/projects",
            json!({"slug": project, "policy": "files"}),
        )
        .await;
    }
    let (one, _) = cp.mint("acme", "one").await;
    let (two, _) = cp.mint("acme", "two").await;
    (cp, one, two)
}

async fn metric(gw: &GatewayProc, name: &str, labels: &[&str]) -> f64 {
    gw.metrics()
        .await
        .lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|s| l.contains(s)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn ownership_survives_a_gateway_restart_without_redis_through_the_control_plane() {
    let up = StatefulUpstream::start().await;
    let secrets = cp::Secrets::new();
    let (cp, one, two) = objects_control_plane(&secrets, up.addr).await;
    let mut gw1 =
        GatewayProc::launch("", &objects_server_extra(&cp, &secrets, "gw1"), &[], true).await;
    cp::eventually(
        std::time::Duration::from_secs(10),
        "the keys work and ownership is seeded",
        || async { send(&gw1, "GET", "/v1/files", &one, None).await.0 == 200 },
    )
    .await;

    // Project one creates a file and a batch over it through gateway 1.
    let (status, file) = upload_file(&gw1, "/v1/files", &one, b"{}\n").await;
    assert_eq!(status, 200, "{file}");
    let file_id = file["id"].as_str().unwrap().to_owned();
    let (status, batch) = send(
        &gw1,
        "POST",
        "/v1/batches",
        &one,
        Some(
            &json!({"input_file_id": file_id, "endpoint": "/v1/chat/completions",
                      "completion_window": "24h"}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{batch}");
    let batch_id = batch["id"].as_str().unwrap().to_owned();
    // Reading them again reports nothing new; the batch's output file is the project's too.
    assert_eq!(
        send(&gw1, "GET", &format!("/v1/files/{file_id}"), &one, None)
            .await
            .0,
        200
    );
    let (status, batch) = send(&gw1, "GET", &format!("/v1/batches/{batch_id}"), &one, None).await;
    assert_eq!(status, 200);
    let output_id = batch["output_file_id"].as_str().unwrap().to_owned();
    cp::eventually(
        std::time::Duration::from_secs(10),
        "the records reach the control plane",
        || async { cp.objects().await.len() >= 3 },
    )
    .await;
    // Each arrived exactly once: one row each, one delivery each, nothing left to send.
    let records = cp.objects().await;
    let mut got: Vec<(String, String, String)> = records
        .iter()
        .map(|o| {
            (
                o["object_id"].as_str().unwrap().to_owned(),
                o["project"].as_str().unwrap().to_owned(),
                o["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    got.sort();
    let mut want = vec![
        (file_id.clone(), "one".to_owned(), "file".to_owned()),
        (batch_id.clone(), "one".to_owned(), "batch".to_owned()),
        (output_id.clone(), "one".to_owned(), "file".to_owned()),
    ];
    want.sort();
    assert_eq!(got, want);
    assert_eq!(records[0]["org"], "acme");
    assert_eq!(records[0]["provider"], "openai");
    let stored = [r#"kind="objects""#, r#"outcome="stored""#];
    assert_eq!(
        metric(&gw1, "gateway_ingest_records_total", &stored).await,
        3.0
    );
    assert_eq!(
        metric(
            &gw1,
            "gateway_ownership_records_total",
            &[r#"project="acme/one""#, r#"kind="file""#, r#"op="created""#]
        )
        .await,
        2.0
    );
    let (status, _) = send(&gw1, "GET", &format!("/v1/files/{file_id}"), &two, None).await;
    assert_eq!(status, 404);
    assert_eq!(
        metric(
            &gw1,
            "gateway_ownership_refusals_total",
            &[
                r#"project="acme/two""#,
                r#"kind="file""#,
                r#"reason="not_owned""#
            ]
        )
        .await,
        1.0
    );

    // Gateway 1 dies; a new gateway without Redis (its own spool and snapshot file) starts.
    gw1.kill();
    let gw2 = GatewayProc::launch("", &objects_server_extra(&cp, &secrets, "gw2"), &[], true).await;
    cp::eventually(
        std::time::Duration::from_secs(10),
        "gateway 2 is seeded",
        || async {
            let (status, v) = send(&gw2, "GET", &format!("/v1/files/{file_id}"), &one, None).await;
            // Before the seed: refused as unavailable, never as missing.
            assert!(
                status == 200
                    || (status == 503 && v["error"]["code"] == "ownership_unavailable")
                    || (status == 401),
                "{status} {v}"
            );
            status == 200
        },
    )
    .await;
    assert_eq!(metric(&gw2, "gateway_ownership_ready", &[]).await, 1.0);
    assert_eq!(
        metric(&gw2, "gateway_ownership_seeded_objects", &[]).await,
        3.0
    );
    // Project one still owns both; project two still gets 404, nothing reaching the provider.
    let (status, v) = send(&gw2, "GET", &format!("/v1/batches/{batch_id}"), &one, None).await;
    assert_eq!(status, 200, "{v}");
    let (_, list) = send(&gw2, "GET", "/v1/files", &one, None).await;
    let mut listed = ids(&list);
    listed.sort();
    let mut files = vec![file_id.clone(), output_id.clone()];
    files.sort();
    assert_eq!(listed, files);
    let before = up.count();
    for path in [
        format!("/v1/files/{file_id}"),
        format!("/v1/files/{output_id}/content"),
        format!("/v1/batches/{batch_id}"),
    ] {
        let (status, v) = send(&gw2, "GET", &path, &two, None).await;
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (404, Some("object_not_found")),
            "{path}"
        );
        let (status, _) = send(&gw2, "DELETE", &path, &two, None).await;
        assert!(status == 404 || status == 403, "{path}: {status}");
    }
    assert_eq!(up.count(), before, "a refused request reached the provider");
    let (_, list) = send(&gw2, "GET", "/v1/files", &two, None).await;
    assert_eq!(ids(&list), Vec::<String>::new());
    // Nothing was reported twice: the seeded records are not new.
    assert_eq!(
        metric(&gw2, "gateway_ingest_records_total", &stored).await,
        0.0
    );

    // The owner deletes the file: the tombstone reaches the control plane, which no longer
    // serves it to seeding gateways.
    let (status, _) = send(&gw2, "DELETE", &format!("/v1/files/{file_id}"), &one, None).await;
    assert_eq!(status, 200);
    cp::eventually(
        std::time::Duration::from_secs(10),
        "the deletion reaches the control plane",
        || async { cp.objects().await.len() == 2 },
    )
    .await;
    assert!(cp
        .objects()
        .await
        .iter()
        .all(|o| o["object_id"] != file_id.as_str()));
}

#[tokio::test]
async fn until_seeded_requests_naming_objects_fail_closed_and_inference_is_served() {
    let up = StatefulUpstream::start().await;
    let secrets = cp::Secrets::new();
    let (mut cp, one, _) = objects_control_plane(&secrets, up.addr).await;
    let extra = objects_server_extra(&cp, &secrets, "gw");
    let mut gw = GatewayProc::launch("", &extra, &[], true).await;
    cp::eventually(std::time::Duration::from_secs(10), "seeded", || async {
        send(&gw, "GET", "/v1/files", &one, None).await.0 == 200
    })
    .await;
    let (status, file) = upload_file(&gw, "/v1/files", &one, b"{}\n").await;
    assert_eq!(status, 200, "{file}");
    let id = file["id"].as_str().unwrap().to_owned();
    cp::eventually(std::time::Duration::from_secs(10), "recorded", || async {
        cp.objects().await.len() == 1
    })
    .await;

    // The control plane goes down and the gateway restarts from its last-known-good snapshot:
    // it serves inference, but cannot tell whose objects are whose yet.
    cp.stop().await;
    gw.kill();
    gw.spawn(true).await;
    let before = up.count();
    for path in [format!("/v1/files/{id}"), "/v1/files".to_owned()] {
        let (status, v) = send(&gw, "GET", &path, &one, None).await;
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (503, Some("ownership_unavailable")),
            "{path}: {v}"
        );
    }
    assert_eq!(up.count(), before);
    assert_eq!(metric(&gw, "gateway_ownership_ready", &[]).await, 0.0);
    assert!(
        metric(
            &gw,
            "gateway_ownership_refusals_total",
            &[r#"project="acme/one""#, r#"reason="unseeded""#]
        )
        .await
            >= 2.0
    );
    let (status, _) = send(
        &gw,
        "POST",
        "/v1/chat/completions",
        &one,
        Some(&chat_body("gpt-4o", false)),
    )
    .await;
    assert_eq!(status, 200);

    // Once the control plane is back, the gateway seeds and the owner gets its file again.
    cp.restart().await;
    cp::eventually(
        std::time::Duration::from_secs(40),
        "seeded after the control plane came back",
        || async {
            send(&gw, "GET", &format!("/v1/files/{id}"), &one, None)
                .await
                .0
                == 200
        },
    )
    .await;
}
