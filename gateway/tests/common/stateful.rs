//! A mock provider that keeps real state for whoever holds its key, as a provider account
//! does: OpenAI files, batches and stored responses, Anthropic message batches, and a
//! transcription endpoint reading a multipart form. Every project behind the gateway shares
//! one provider key, so without the gateway's isolation they would all see one account.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use serde_json::{json, Value};

use super::Seen;

/// Distinct ids across test processes, so records in a shared Redis never collide.
static RUN: AtomicU64 = AtomicU64::new(0);

#[derive(Default)]
struct Account {
    files: BTreeMap<String, (Value, Bytes)>,
    batches: BTreeMap<String, Value>,
    responses: BTreeMap<String, Value>,
    message_batches: BTreeMap<String, Value>,
    uploads: BTreeMap<String, (Value, Vec<u8>)>,
    /// Vector store -> (object, attached file ids).
    vector_stores: BTreeMap<String, (Value, Vec<String>)>,
}

#[derive(Default)]
struct State {
    /// Accounts by the credential that reached the mock.
    accounts: BTreeMap<String, Account>,
    next: u64,
}

/// The stateful mock on 127.0.0.1:0.
pub struct StatefulUpstream {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    state: Arc<Mutex<State>>,
    prefix: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StatefulUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn reply(status: u16, v: Value) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(v.to_string()))
        .unwrap()
}

/// OpenAI's answer for an id that does not exist.
fn openai_missing(what: &str, id: &str) -> Response {
    reply(
        404,
        json!({"error": {"message": format!("No such {what}: {id}"), "type": "invalid_request_error", "param": "id", "code": null}}),
    )
}

fn list(items: Vec<Value>) -> Value {
    json!({
        "object": "list",
        "first_id": items.first().map(|i| i["id"].clone()),
        "last_id": items.last().map(|i| i["id"].clone()),
        "has_more": false,
        "data": items,
    })
}

/// The text value of a multipart field (good enough for a mock).
pub fn form_field(body: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    let marker = format!("name=\"{name}\"");
    let at = text.find(&marker)?;
    let rest = &text[at..];
    let start = rest.find("\r\n\r\n")? + 4;
    let end = rest[start..].find("\r\n")?;
    Some(rest[start..start + end].to_owned())
}

/// The file part of a multipart body: (filename, content).
fn form_file(body: &[u8]) -> Option<(String, Bytes)> {
    let text = String::from_utf8_lossy(body);
    let at = text.find("filename=\"")? + 10;
    let filename = text[at..at + text[at..].find('"')?].to_owned();
    let start = at + text[at..].find("\r\n\r\n")? + 4;
    let end = start + text[start..].find("\r\n--")?;
    Some((filename, Bytes::copy_from_slice(&body[start..end])))
}

impl StatefulUpstream {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let state = Arc::new(Mutex::new(State::default()));
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let prefix = format!(
            "{}x{}x{nanos}",
            std::process::id(),
            RUN.fetch_add(1, Ordering::SeqCst)
        );
        let (s, st, p) = (seen.clone(), state.clone(), prefix.clone());
        let app = axum::Router::new().fallback(move |req: Request| {
            let (s, st, p) = (s.clone(), st.clone(), p.clone());
            async move { handle(s, st, p, req).await }
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            addr,
            seen,
            state,
            prefix,
            task,
        }
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Whether the account holding `key` still has the file `id`.
    pub fn has_file(&self, key: &str, id: &str) -> bool {
        let st = self.state.lock().unwrap();
        st.accounts
            .get(key)
            .is_some_and(|a| a.files.contains_key(id))
    }

    /// Creates a file directly at the provider (not through the gateway).
    pub fn create_file_directly(&self, key: &str) -> String {
        let mut st = self.state.lock().unwrap();
        st.next += 1;
        let id = format!("file-{}-{}", self.prefix, st.next);
        let obj = json!({"id": id, "object": "file", "bytes": 1, "filename": "direct.jsonl", "purpose": "batch", "created_at": 1, "status": "processed"});
        st.accounts
            .entry(key.to_owned())
            .or_default()
            .files
            .insert(id.clone(), (obj, Bytes::from_static(b"x")));
        id
    }
}

async fn handle(
    seen: Arc<Mutex<Vec<Seen>>>,
    state: Arc<Mutex<State>>,
    prefix: String,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    seen.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        path_and_query: parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers: parts.headers.clone(),
        body: body.clone(),
    });
    let key = parts
        .headers
        .get("authorization")
        .or_else(|| parts.headers.get("x-api-key"))
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim_start_matches("Bearer ")
        .to_owned();
    if key.is_empty() {
        return reply(
            401,
            json!({"error": {"message": "no key", "type": "invalid_request_error"}}),
        );
    }
    let path = parts.uri.path().to_owned();
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let method = parts.method.as_str();
    let req_json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);

    let mut st = state.lock().unwrap();
    st.next += 1;
    let n = st.next;
    let acct = st.accounts.entry(key).or_default();
    match (method, segs.as_slice()) {
        ("POST", ["v1", "files"]) => {
            let Some((filename, content)) = form_file(&body) else {
                return reply(
                    400,
                    json!({"error": {"message": "file required", "type": "invalid_request_error"}}),
                );
            };
            let purpose = form_field(&body, "purpose").unwrap_or_default();
            let id = format!("file-{prefix}-{n}");
            let obj = json!({"id": id, "object": "file", "bytes": content.len(), "created_at": n, "filename": filename, "purpose": purpose, "status": "processed"});
            acct.files.insert(id, (obj.clone(), content));
            reply(200, obj)
        }
        ("GET", ["v1", "files"]) => reply(
            200,
            list(acct.files.values().map(|f| f.0.clone()).collect()),
        ),
        ("GET", ["v1", "files", id]) => match acct.files.get(*id) {
            Some(f) => reply(200, f.0.clone()),
            None => openai_missing("File object", id),
        },
        ("GET", ["v1", "files", id, "content"]) => match acct.files.get(*id) {
            Some(f) => Response::builder()
                .status(200)
                .body(Body::from(f.1.clone()))
                .unwrap(),
            None => openai_missing("File object", id),
        },
        ("DELETE", ["v1", "files", id]) => match acct.files.remove(*id) {
            Some(_) => reply(200, json!({"id": id, "object": "file", "deleted": true})),
            None => openai_missing("File object", id),
        },
        ("POST", ["v1", "batches"]) => {
            let input = req_json["input_file_id"].as_str().unwrap_or("").to_owned();
            if !acct.files.contains_key(&input) {
                return openai_missing("File object", &input);
            }
            let id = format!("batch_{prefix}_{n}");
            let out = format!("file-{prefix}-{n}-out");
            let out_obj = json!({"id": out, "object": "file", "bytes": 2, "created_at": n, "filename": "batch_output.jsonl", "purpose": "batch_output", "status": "processed"});
            acct.files
                .insert(out.clone(), (out_obj, Bytes::from_static(b"{}")));
            let obj = json!({"id": id, "object": "batch", "endpoint": req_json["endpoint"], "input_file_id": input,
                "completion_window": "24h", "status": "completed", "output_file_id": out, "error_file_id": null, "created_at": n});
            acct.batches.insert(id, obj.clone());
            reply(200, obj)
        }
        ("GET", ["v1", "batches"]) => reply(200, list(acct.batches.values().cloned().collect())),
        ("GET", ["v1", "batches", id]) => match acct.batches.get(*id) {
            Some(b) => reply(200, b.clone()),
            None => openai_missing("batch", id),
        },
        ("POST", ["v1", "batches", id, "cancel"]) => match acct.batches.get_mut(*id) {
            Some(b) => {
                b["status"] = json!("cancelled");
                reply(200, b.clone())
            }
            None => openai_missing("batch", id),
        },
        ("POST", ["v1", "responses"]) => {
            if let Some(prev) = req_json["previous_response_id"].as_str() {
                if !acct.responses.contains_key(prev) {
                    return openai_missing("response", prev);
                }
            }
            let id = format!("resp_{prefix}_{n}");
            let obj = json!({"id": id, "object": "response", "created_at": n, "status": "completed", "model": req_json["model"],
                "previous_response_id": req_json["previous_response_id"],
                "output": [{"type": "message", "id": format!("msg_{n}"), "status": "completed", "role": "assistant",
                    "content": [{"type": "output_text", "text": "Hello from mock", "annotations": []}]}],
                "usage": {"input_tokens": 5, "output_tokens": 4, "total_tokens": 9}});
            if req_json["store"].as_bool() != Some(false) {
                acct.responses.insert(id, obj.clone());
            }
            if req_json["stream"].as_bool() == Some(true) {
                let events = format!(
                    "event: response.created\ndata: {}\n\nevent: response.completed\ndata: {}\n\n",
                    json!({"type": "response.created", "sequence_number": 0, "response": obj}),
                    json!({"type": "response.completed", "sequence_number": 1, "response": obj})
                );
                return Response::builder()
                    .status(200)
                    .header("content-type", "text/event-stream")
                    .body(Body::from(events))
                    .unwrap();
            }
            reply(200, obj)
        }
        ("GET", ["v1", "responses", id]) => match acct.responses.get(*id) {
            Some(r) => reply(200, r.clone()),
            None => openai_missing("response", id),
        },
        ("DELETE", ["v1", "responses", id]) => match acct.responses.remove(*id) {
            Some(_) => reply(
                200,
                json!({"id": id, "object": "response", "deleted": true}),
            ),
            None => openai_missing("response", id),
        },
        ("POST", ["v1", "uploads"]) => {
            let id = format!("upload_{prefix}_{n}");
            let obj = json!({"id": id, "object": "upload", "status": "pending", "filename": req_json["filename"], "purpose": req_json["purpose"], "bytes": req_json["bytes"], "created_at": n});
            acct.uploads.insert(id, (obj.clone(), Vec::new()));
            reply(200, obj)
        }
        ("POST", ["v1", "uploads", id, "parts"]) => match acct.uploads.get_mut(*id) {
            Some(u) => {
                let data = form_file(&body).map(|f| f.1).unwrap_or_default();
                u.1.extend_from_slice(&data);
                reply(
                    200,
                    json!({"id": format!("part_{n}"), "object": "upload.part", "upload_id": id, "created_at": n}),
                )
            }
            None => openai_missing("upload", id),
        },
        ("POST", ["v1", "uploads", id, "complete"]) => match acct.uploads.remove(*id) {
            Some((mut obj, data)) => {
                let file_id = format!("file-{prefix}-{n}");
                let file = json!({"id": file_id, "object": "file", "bytes": data.len(), "created_at": n, "filename": obj["filename"], "purpose": obj["purpose"], "status": "processed"});
                acct.files
                    .insert(file_id, (file.clone(), Bytes::from(data)));
                obj["status"] = json!("completed");
                obj["file"] = file;
                reply(200, obj)
            }
            None => openai_missing("upload", id),
        },
        ("POST", ["v1", "vector_stores"]) => {
            let files: Vec<String> = req_json["file_ids"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|f| f.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            if let Some(missing) = files.iter().find(|f| !acct.files.contains_key(*f)) {
                return openai_missing("file", missing);
            }
            let id = format!("vs_{prefix}_{n}");
            let obj = json!({"id": id, "object": "vector_store", "name": req_json["name"], "created_at": n, "file_counts": {"total": files.len()}});
            acct.vector_stores.insert(id, (obj.clone(), files));
            reply(200, obj)
        }
        ("GET", ["v1", "vector_stores", id]) => match acct.vector_stores.get(*id) {
            Some(v) => reply(200, v.0.clone()),
            None => openai_missing("vector store", id),
        },
        ("POST", ["v1", "vector_stores", vs, "files"]) => {
            let file = req_json["file_id"].as_str().unwrap_or("").to_owned();
            if !acct.files.contains_key(&file) {
                return openai_missing("file", &file);
            }
            match acct.vector_stores.get_mut(*vs) {
                Some(v) => {
                    v.1.push(file.clone());
                    reply(
                        200,
                        json!({"id": file, "object": "vector_store.file", "vector_store_id": vs, "status": "completed"}),
                    )
                }
                None => openai_missing("vector store", vs),
            }
        }
        ("GET", ["v1", "vector_stores", vs, "files", file]) => match acct.vector_stores.get(*vs) {
            Some(v) if v.1.iter().any(|f| f == file) => reply(
                200,
                json!({"id": file, "object": "vector_store.file", "vector_store_id": vs, "status": "completed"}),
            ),
            _ => openai_missing("vector store file", file),
        },
        ("POST", ["v1", "audio", "transcriptions"]) => {
            let model = form_field(&body, "model").unwrap_or_default();
            let bytes = form_file(&body).map_or(0, |f| f.1.len());
            reply(
                200,
                json!({"text": format!("transcribed {bytes} bytes with {model}")}),
            )
        }
        ("POST", ["v1", "chat", "completions"]) => reply(
            200,
            json!({"id": "chatcmpl-mock", "object": "chat.completion", "created": 1, "model": req_json["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello from mock"}, "logprobs": null, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}}),
        ),
        ("POST", ["v1", "messages", "batches"]) => {
            let id = format!("msgbatch_{prefix}_{n}");
            let obj = json!({"id": id, "type": "message_batch", "processing_status": "in_progress", "created_at": "2026-01-01T00:00:00Z"});
            acct.message_batches.insert(id, obj.clone());
            reply(200, obj)
        }
        ("GET", ["v1", "messages", "batches"]) => {
            reply(200, list(acct.message_batches.values().cloned().collect()))
        }
        ("GET", ["v1", "messages", "batches", id]) => match acct.message_batches.get(*id) {
            Some(b) => reply(200, b.clone()),
            None => reply(
                404,
                json!({"type": "error", "error": {"type": "not_found_error", "message": "Not found"}}),
            ),
        },
        _ => reply(200, json!({"ok": true, "path": path})),
    }
}
