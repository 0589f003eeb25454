//! Object ids a JSON request body names (`input_file_id`, `training_file`, `file_id` inside
//! message content, `previous_response_id`, `vector_store_ids`...), wherever they are nested:
//! a chat message may attach a file by id as well as a batch may.

use memchr::memmem;
use serde_json::Value;

/// Keys whose string value names one provider object.
const ONE: &[&str] = &[
    "file_id",
    "input_file_id",
    "training_file",
    "validation_file",
    "previous_response_id",
    "vector_store_id",
    "container",
    "conversation",
];

/// Keys whose array of strings names provider objects.
const MANY: &[&str] = &["file_ids", "vector_store_ids"];

/// What a request body says about provider objects.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BodyRefs {
    /// Every object id named anywhere in the body (deduplicated).
    pub ids: Vec<String>,
    /// Top-level `store` (the Responses API stores unless it is `false`).
    pub store: Option<bool>,
    /// Top-level `previous_response_id` is present.
    pub previous_response: bool,
}

/// Whether the body may name an object: a quick scan that spares plain inference bodies a
/// full parse. A key spelled with `\u` escapes is caught by looking for any `\u` at all.
fn may_reference(body: &[u8]) -> bool {
    ONE.iter().chain(MANY).chain(&["store"]).any(|k| {
        let mut needle = Vec::with_capacity(k.len() + 1);
        needle.extend_from_slice(k.as_bytes());
        needle.push(b'"');
        memmem::find(body, &needle).is_some()
    }) || memmem::find(body, b"\\u").is_some()
}

/// Scans a JSON body. A body that is not JSON names nothing (routing refuses it elsewhere).
pub fn scan(body: &[u8]) -> BodyRefs {
    let mut refs = BodyRefs::default();
    if !may_reference(body) {
        return refs;
    }
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return refs;
    };
    if let Value::Object(top) = &v {
        refs.store = top.get("store").and_then(Value::as_bool);
        refs.previous_response = top
            .get("previous_response_id")
            .is_some_and(|p| !p.is_null());
    }
    walk(&v, &mut refs.ids);
    refs
}

fn push(ids: &mut Vec<String>, id: &str) {
    if !ids.iter().any(|i| i == id) {
        ids.push(id.to_owned());
    }
}

fn walk(v: &Value, ids: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            // An Anthropic tool call's `input` holds the model's arguments, not references.
            let tool_use = map
                .get("type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.ends_with("tool_use"));
            for (k, v) in map {
                let k = k.as_str();
                if k == "metadata" || (tool_use && k == "input") {
                    continue; // free-form user data, not references
                }
                if ONE.contains(&k) {
                    match v {
                        Value::String(s) => push(ids, s),
                        // `conversation: {"id": ...}`
                        Value::Object(o) if k == "conversation" => {
                            if let Some(Value::String(s)) = o.get("id") {
                                push(ids, s);
                            }
                        }
                        _ => {}
                    }
                } else if MANY.contains(&k) {
                    if let Value::Array(items) = v {
                        for s in items.iter().filter_map(Value::as_str) {
                            push(ids, s);
                        }
                    }
                }
                walk(v, ids);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| walk(i, ids)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(body: &str) -> Vec<String> {
        scan(body.as_bytes()).ids
    }

    #[test]
    fn plain_inference_names_nothing() {
        assert!(ids(
            r#"{"model":"gpt-4o","messages":[{"role":"user","content":"file_id please"}]}"#
        )
        .is_empty());
        assert!(ids("not json").is_empty());
    }

    #[test]
    fn finds_nested_references() {
        assert_eq!(
            ids(r#"{"input_file_id":"file-1","endpoint":"/v1/chat/completions"}"#),
            ["file-1"]
        );
        assert_eq!(
            ids(r#"{"training_file":"file-2","validation_file":"file-3","model":"m"}"#),
            ["file-2", "file-3"]
        );
        assert_eq!(
            ids(
                r#"{"model":"m","messages":[{"role":"user","content":[{"type":"file","file":{"file_id":"file-4"}}]}]}"#
            ),
            ["file-4"]
        );
        assert_eq!(
            ids(
                r#"{"model":"m","tools":[{"type":"file_search","vector_store_ids":["vs_1","vs_2"]}],"input":[{"role":"user","content":[{"type":"input_file","file_id":"file-5"}]}]}"#
            ),
            ["file-5", "vs_1", "vs_2"]
        );
        assert_eq!(ids(r#"{"file_ids":["file-6","file-6"]}"#), ["file-6"]);
        assert_eq!(ids(r#"{"conversation":{"id":"conv_1"}}"#), ["conv_1"]);
        assert_eq!(ids(r#"{"container":"cntr_1"}"#), ["cntr_1"]);
    }

    #[test]
    fn escaped_keys_are_still_found() {
        assert_eq!(ids(r#"{"input\u005ffile_id":"file-1"}"#), ["file-1"]);
        assert_eq!(ids(r#"{"\u0066ile_id":"file-2"}"#), ["file-2"]);
    }

    #[test]
    fn metadata_and_schemas_are_not_references() {
        assert!(ids(r#"{"metadata":{"file_id":"mine"}}"#).is_empty());
        assert!(ids(r#"{"messages":[{"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"f","input":{"file_id":"report-7"}}]}]}"#).is_empty());
        assert!(ids(r#"{"tools":[{"type":"function","function":{"parameters":{"properties":{"file_id":{"type":"string"}}}}}]}"#).is_empty());
    }

    #[test]
    fn store_and_previous_response() {
        let r = scan(br#"{"model":"m","store":false}"#);
        assert_eq!(r.store, Some(false));
        let r = scan(br#"{"model":"m","previous_response_id":"resp_1"}"#);
        assert!(r.previous_response);
        assert_eq!(r.ids, ["resp_1"]);
        assert_eq!(scan(br#"{"model":"m"}"#), BodyRefs::default());
    }
}
