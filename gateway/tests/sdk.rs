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

const FILES_KEY: &str = "gwk_files_key_for_sdk_tests_0000000000000000000000000000000000000";
const OTHER_KEY: &str = "gwk_other_key_for_sdk_tests_0000000000000000000000000000000000000";

fn run_script(url: String, key: &str, extra: &[(&str, &str)]) -> serde_json::Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk_clients.py");
    let mut cmd = std::process::Command::new(python());
    cmd.arg(script)
        .env("GATEWAY_URL", url)
        .env("GATEWAY_KEY", key)
        .env_remove("OPENAI_API_KEY")
        .env_remove("ANTHROPIC_API_KEY");
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "SDK script failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn official_sdks_transcribe_upload_list_and_retrieve_where_the_policy_allows() {
    let up = common::stateful::StatefulUpstream::start().await;
    let cfg = format!(
        r#"
providers:
  - name: openai
    kind: openai
    base_url: "http://{addr}"
    api_key: "env:TEST_OPENAI_KEY"
  - name: anthropic
    kind: anthropic
    base_url: "http://{addr}"
    api_key: "env:TEST_ANTHROPIC_KEY"
routes:
  - model: "gpt-*"
    provider: openai
  - model: "whisper-1"
    provider: openai
projects:
  - slug: files
    endpoints: [files, batches, message_batches]
    keys: [{{digest: "{files}"}}]
  - slug: other
    endpoints: [files, batches, message_batches]
    keys: [{{digest: "{other}"}}]
"#,
        addr = up.addr,
        files = digest(FILES_KEY),
        other = digest(OTHER_KEY),
    );
    let gw = GatewayProc::start(&cfg).await;
    let url = gw.url("");
    let v = tokio::task::spawn_blocking(move || {
        run_script(
            url,
            FILES_KEY,
            &[
                ("GATEWAY_SDK_PART", "objects"),
                ("GATEWAY_OTHER_KEY", OTHER_KEY),
            ],
        )
    })
    .await
    .unwrap();
    assert_eq!(v["transcription"], "transcribed 1000 bytes with whisper-1");
    assert_eq!(v["file_purpose"], "batch");
    assert_eq!(v["files"], serde_json::json!([true]));
    assert_eq!(v["retrieved"], true);
    assert_eq!(
        v["model"],
        serde_json::json!({"id": "gpt-4o", "owned_by": "openai"})
    );
    assert_eq!(v["other_files"], serde_json::json!([]));
    for name in [
        "other_retrieve",
        "other_delete",
        "other_content",
        "other_batch",
    ] {
        assert_eq!(v[name], 404, "{name}");
    }
    assert_eq!(v["deleted"], true);
    assert_eq!(v["batch_retrieved"], true);
    assert_eq!(v["batches"], serde_json::json!([true]));
    assert_eq!(v["other_batches"], serde_json::json!([]));
    assert_eq!(v["other_batch_retrieve"], 404);
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

#[tokio::test]
async fn official_sdks_back_off_on_a_rate_limit_429_and_succeed() {
    const OA: &str = "gwk_sdk_retry_openai_0000000000000000000000000000000000000000000";
    const AN: &str = "gwk_sdk_retry_anthropic_000000000000000000000000000000000000000";
    // The second call of each SDK is refused until the minute ends: start late in a minute so
    // the SDKs' wait (Retry-After, at most a few seconds here) keeps the test short.
    loop {
        let s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            % 60;
        if (54..58).contains(&s) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let up = MockUpstream::start().await;
    let projects = format!(
        "projects:\n  - slug: oa\n    requests_per_minute: 1\n    keys:\n      - digest: \"{}\"\n  - slug: an\n    requests_per_minute: 1\n    keys:\n      - digest: \"{}\"\n",
        digest(OA),
        digest(AN)
    );
    // The standard providers and routes, with these two projects only.
    let base = standard_config(up.addr);
    let snapshot = format!("{}{projects}", &base[..base.find("projects:").unwrap()]);
    let gw = GatewayProc::start(&snapshot).await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk_clients.py");
    let url = gw.url("");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python())
            .arg(script)
            .env("GATEWAY_URL", url)
            .env("GATEWAY_KEY", "unused")
            .env("SDK_SCENARIO", "retry")
            .env("OPENAI_RETRY_KEY", OA)
            .env("ANTHROPIC_RETRY_KEY", AN)
            .env_remove("OPENAI_API_KEY")
            .env_remove("ANTHROPIC_API_KEY")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "SDK script failed:\n{}\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        gw.logs()
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for k in [
        "openai_first",
        "openai_retried",
        "anthropic_first",
        "anthropic_retried",
    ] {
        assert_eq!(v[k], "Hello from mock", "{k}: {v}");
    }
    // Each retried call was refused at least once, then went through: 4 upstream calls.
    let metrics = gw.metrics().await;
    let refused: f64 = metrics
        .lines()
        .filter(|l| {
            l.starts_with("gateway_limit_rejections_total") && l.contains("kind=\"requests\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(refused >= 2.0, "{metrics}");
    assert_eq!(up.count(), 4);
}
