//! The official `openai` and `anthropic` Python SDKs, pointed at the gateway, work unchanged.
//! Needs a Python with both SDKs: `scripts/test.sh` creates `.venv` with them; set
//! `GATEWAY_TEST_PYTHON` to use another interpreter.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;

use common::*;

fn python() -> PathBuf {
    if let Ok(p) = std::env::var("GATEWAY_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(
        venv.exists(),
        "no Python with the SDKs at {}: run scripts/test.sh, or `python3 -m venv .venv && .venv/bin/pip install openai anthropic`, or set GATEWAY_TEST_PYTHON",
        venv.display()
    );
    venv
}

#[tokio::test]
async fn official_openai_and_anthropic_sdks_work_through_the_gateway() {
    let up = MockUpstream::start().await;
    let gw = GatewayProc::start(&standard_config(up.addr)).await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk_clients.py");
    let url = gw.url("");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python())
            .arg(script)
            .env("GATEWAY_URL", url)
            .env("GATEWAY_KEY", DEMO_KEY)
            .env_remove("OPENAI_API_KEY")
            .env_remove("ANTHROPIC_API_KEY")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "SDK script failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["openai_text"], "Hello from mock");
    assert_eq!(v["openai_usage"], 9);
    assert_eq!(v["openai_stream"], "Hello from mock");
    assert_eq!(v["openai_models"], serde_json::json!(["fast", "needs-key"]));
    assert_eq!(
        v["openai_bad_key"],
        serde_json::json!({"status": 401, "code": "invalid_api_key"})
    );
    assert_eq!(
        v["openai_bad_model"],
        serde_json::json!({"status": 404, "code": "model_not_found"})
    );
    assert_eq!(v["anthropic_text"], "Hello from mock");
    assert_eq!(v["anthropic_usage"], 4);
    assert_eq!(v["anthropic_stream"], "Hello from mock");
    // Every upstream call carried the provider key, never the virtual key.
    for seen in up.requests() {
        assert!(!format!("{:?}", seen.headers).contains(DEMO_KEY));
    }
    assert_eq!(up.count(), 4);
}
