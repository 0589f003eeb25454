//! Replays every stored input of every fuzz target on stable: the seed corpus
//! (`corpus/<target>/`) and every input that once made a target fail (`regressions/<target>/`,
//! copied there from cargo-fuzz's `artifacts/` when the bug was fixed). A crash once found
//! stays fixed; a target with no stored input fails instead of passing silently.

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut replayed = 0;
    let mut failures = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
            let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            if std::panic::catch_unwind(|| run(&data)).is_err() {
                failures.push(path.display().to_string());
            }
            replayed += 1;
        }
    }
    assert!(replayed > 0, "no stored inputs for fuzz target {target}");
    assert!(failures.is_empty(), "{target} fails on: {failures:#?}");
}

#[test]
fn model_body_inputs_replay_cleanly() {
    replay("model_body", gateway_fuzz::model_body);
}

#[test]
fn request_path_inputs_replay_cleanly() {
    replay("request_path", gateway_fuzz::request_path);
}

#[test]
fn key_headers_inputs_replay_cleanly() {
    replay("key_headers", gateway_fuzz::key_headers);
}

#[test]
fn gateway_config_inputs_replay_cleanly() {
    replay("gateway_config", gateway_fuzz::gateway_config);
}

#[test]
fn oidc_token_inputs_replay_cleanly() {
    replay("oidc_token", gateway_fuzz::oidc_token);
}

#[test]
fn jwks_document_inputs_replay_cleanly() {
    replay("jwks_document", gateway_fuzz::jwks_document);
}

#[test]
fn slug_inputs_replay_cleanly() {
    replay("slug", gateway_fuzz::slug);
}

#[test]
fn signed_snapshot_inputs_replay_cleanly() {
    replay("signed_snapshot", gateway_fuzz::signed_snapshot);
}

#[test]
fn sse_stream_inputs_replay_cleanly() {
    replay("sse_stream", gateway_fuzz::sse_stream);
}

#[test]
fn usage_sse_inputs_replay_cleanly() {
    replay("usage_sse", gateway_fuzz::usage_sse);
}

#[test]
fn multipart_inputs_replay_cleanly() {
    replay("multipart", gateway_fuzz::multipart);
}

#[test]
fn object_refs_inputs_replay_cleanly() {
    replay("object_refs", gateway_fuzz::object_refs);
}

#[test]
fn endpoint_class_inputs_replay_cleanly() {
    replay("endpoint_class", gateway_fuzz::endpoint_class);
}

/// The seeds reach the deep end of token handling: a validly signed token with good claims is
/// accepted, so the target really exercises claims handling and not only the signature check.
#[test]
fn oidc_target_accepts_a_valid_signed_token() {
    let claims =
        br#"{"iss":"http://127.0.0.1:9","aud":"controlplane","sub":"alice","exp":4102444800}"#;
    let header = format!(
        r#"{{"alg":"ES256","typ":"JWT","kid":"{}"}}"#,
        gateway_fuzz::OIDC_KID
    );
    let token = gateway_fuzz::signed_token(header.as_bytes(), claims);
    assert!(gateway_fuzz::oidc_token_accepts(&token));
}
