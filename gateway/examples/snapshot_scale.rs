//! Snapshot scale benchmark: a control plane holding KEYS virtual keys across PROJECTS
//! projects compiles, signs and streams one snapshot to a real gateway process while a
//! concurrent load runs through that gateway; prints compile time, transfer size, time to
//! apply, the gateway's extra memory and the failed-request count.
//!
//!   benches/snapshot_scale.sh            # KEYS=100000 PROJECTS=1000 by default
//!
//! Needs the release `gateway` binary next to this example's directory (the script builds it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use controlplane::config::Config;
use controlplane::store::Store;
use gateway_schema::Secret;

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

async fn mock_upstream() -> std::net::SocketAddr {
    let app = axum::Router::new().fallback(|| async {
        (
            [("content-type", "application/json")],
            r#"{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#,
        )
    });
    // Its own thread and runtime: the in-process control plane's compile must not starve it.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    l.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(l).unwrap();
            let _ = axum::serve(l, app).await;
        });
    });
    addr
}

/// Inserts `projects` projects and `keys` keys into org 1 directly (the API would take minutes).
async fn bulk_insert(store_url: &str, projects: usize, keys: usize) {
    let store = Store::connect(&Secret::new(store_url), 2).await.unwrap();
    drop(store); // migrations applied
    use sqlx::Connection as _;
    let path = store_url
        .trim_start_matches("sqlite://")
        .trim_end_matches("?mode=rwc");
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{path}"))
        .await
        .unwrap();
    let mut tx = c.begin().await.unwrap();
    for p in 0..projects {
        sqlx::query(
            "INSERT INTO projects (org_id, slug, display_name, policy_id, created_at) VALUES (1, $1, $1, NULL, 0)",
        )
        .bind(format!("bulk-{p}"))
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    let first_project: i64 =
        sqlx::query_scalar("SELECT MIN(id) FROM projects WHERE slug LIKE 'bulk-%'")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
    for k in 0..keys {
        let d = gateway_schema::KeyDigest::of(format!("bulk-key-{k}").as_bytes());
        sqlx::query(
            "INSERT INTO virtual_keys (key_id, project_id, name, digest, prefix, created_at) VALUES ($1, $2, 'bulk', $3, 'gwk_bulk', 0)",
        )
        .bind(format!("kbulk{k}"))
        .bind(first_project + (k % projects.max(1)) as i64)
        .bind(d.to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
}

#[tokio::main]
async fn main() {
    let keys = env_num("KEYS", 100_000);
    let projects = env_num("PROJECTS", 1_000);
    let conns = env_num("CONNS", 32);
    let dir = std::env::temp_dir().join(format!("snapshot-scale-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (key_file, pub_file) = controlplane::keygen::write_pair(&dir.join("signing")).unwrap();
    let secret_file = dir.join("internal");
    std::fs::write(&secret_file, "scale-internal-secret").unwrap();
    let db = dir.join("cp.db");
    let yaml = format!(
        "server:\n  listen: \"127.0.0.1:0\"\n  admin_listen: \"127.0.0.1:0\"\ndatabase:\n  sqlite_path: \"{}\"\nrbac:\n  group_roles:\n    - {{ group: admins, org: \"*\", role: admin }}\nguards:\n  rate_limit_burst: 100000\n  rate_limit_per_second: 100000\ninternal:\n  secret: \"file:{}\"\nsnapshots:\n  signing_key: \"file:{}\"\n",
        db.display(),
        secret_file.display(),
        key_file.display()
    );
    let cfg: Config = serde_yaml_ng::from_str(&yaml).unwrap();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cp_url = format!("http://{}", l.local_addr().unwrap());
    let cp_admin = format!("http://{}", a.local_addr().unwrap());
    tokio::spawn(controlplane::run(l, a, cfg, std::future::pending()));
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let admin = |m: reqwest::Method, p: &str| {
        http.request(m, format!("{cp_url}{p}"))
            .header("x-forwarded-email", "bench@example.com")
            .header("x-forwarded-groups", "admins")
    };
    for _ in 0..200 {
        if http.get(format!("{cp_url}/healthz")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    // A small config first: one org, provider, route, project and the key the load uses.
    let upstream = mock_upstream().await;
    let post =
        |p: &str, body: serde_json::Value| admin(reqwest::Method::POST, p).json(&body).send();
    post("/api/v1/orgs", serde_json::json!({"slug": "bench"}))
        .await
        .unwrap();
    post(
        "/api/v1/orgs/bench/providers",
        serde_json::json!({"slug": "openai", "kind": "openai-compatible", "base_url": format!("http://{upstream}")}),
    )
    .await
    .unwrap();
    post(
        "/api/v1/orgs/bench/routes",
        serde_json::json!({"slug": "all", "model": "*", "provider": "openai"}),
    )
    .await
    .unwrap();
    post(
        "/api/v1/orgs/bench/projects",
        serde_json::json!({"slug": "load"}),
    )
    .await
    .unwrap();
    let minted: serde_json::Value = post(
        "/api/v1/orgs/bench/projects/load/keys",
        serde_json::json!({"name": "load"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let load_key = minted["plaintext"].as_str().unwrap().to_owned();

    // The gateway, in control-plane mode.
    let exe = std::env::current_exe().unwrap();
    let gateway_bin = exe.parent().unwrap().parent().unwrap().join("gateway");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let admin_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let gw_conf = dir.join("gateway.yaml");
    std::fs::write(
        &gw_conf,
        format!("server:\n  listen: \"127.0.0.1:{port}\"\n  admin_listen: \"127.0.0.1:{admin_port}\"\n  threads: 1\n"),
    )
    .unwrap();
    let mut child = std::process::Command::new(&gateway_bin)
        .args(["run", "--config"])
        .arg(&gw_conf)
        .args(["--control-plane", &cp_url])
        .arg("--internal-secret")
        .arg(format!("file:{}", secret_file.display()))
        .arg("--snapshot-public-key")
        .arg(format!("file:{}", pub_file.display()))
        .arg("--last-known-good")
        .arg(dir.join("lkg.json"))
        .env("GATEWAY_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", gateway_bin.display()));
    let pid = child.id();
    let chat = format!("http://127.0.0.1:{port}/v1/chat/completions");
    let body = serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ok = http
            .post(&chat)
            .bearer_auth(&load_key)
            .json(&body)
            .send()
            .await;
        if ok.map(|r| r.status() == 200).unwrap_or(false) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "gateway never served the small config"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_small = rss_kib(pid);

    // The large config, straight into the store, then one API change to publish it.
    let t = Instant::now();
    bulk_insert(
        &format!("sqlite://{}?mode=rwc", db.display()),
        projects,
        keys,
    )
    .await;
    println!(
        "inserted {projects} projects and {keys} keys in {:?}",
        t.elapsed()
    );
    // What one publish round costs the control plane: read, compile, sign, serialise.
    let store = Store::connect(
        &Secret::new(format!("sqlite://{}?mode=rwc", db.display())),
        2,
    )
    .await
    .unwrap();
    let signing = gateway_schema::SigningKey::from_base64(&Secret::new(
        std::fs::read_to_string(&key_file).unwrap(),
    ))
    .unwrap();
    let t = Instant::now();
    let rows = store.config_rows().await.unwrap();
    let read = t.elapsed();
    let snapshot = controlplane::snapshots::compile::compile(&rows).unwrap();
    let envelope = serde_json::to_string(&signing.sign(&snapshot).unwrap()).unwrap();
    let compiled = t.elapsed();
    store.close().await;

    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut workers = Vec::new();
    for _ in 0..conns {
        let (stop, sent, failed) = (stop.clone(), sent.clone(), failed.clone());
        let (chat, key, body, c) = (chat.clone(), load_key.clone(), body.clone(), http.clone());
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let outcome = c.post(&chat).bearer_auth(&key).json(&body).send().await;
                sent.fetch_add(1, Ordering::Relaxed);
                let failure = match outcome {
                    Ok(r) if r.status() == 200 => None,
                    Ok(r) => Some(format!(
                        "status {}: {}",
                        r.status(),
                        r.text().await.unwrap_or_default()
                    )),
                    Err(e) => Some(format!("client error: {e:?}")),
                };
                if let Some(f) = failure {
                    if failed.fetch_add(1, Ordering::Relaxed) < 5 {
                        eprintln!("failed request: {f}");
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let changed = Instant::now();
    post(
        "/api/v1/orgs/bench/projects",
        serde_json::json!({"slug": "trigger"}),
    )
    .await
    .unwrap();
    // The big snapshot is in force once a bulk key (same org, so same route) gets 200.
    let bulk_key = format!("bulk-key-{}", keys / 2);
    let applied = loop {
        let r = http
            .post(&chat)
            .bearer_auth(&bulk_key)
            .json(&body)
            .send()
            .await;
        if r.map(|r| r.status() == 200).unwrap_or(false) {
            break changed.elapsed();
        }
        assert!(
            changed.elapsed() < Duration::from_secs(120),
            "big snapshot never applied"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.await;
    }
    let rss_big = rss_kib(pid);
    let metrics = http
        .get(format!("{cp_admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let compile_line = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    let compile_sum = compile_line("controlplane_snapshot_compile_seconds_sum");
    let compile_count = compile_line("controlplane_snapshot_compile_seconds_count");
    let lkg_bytes = std::fs::metadata(dir.join("lkg.json"))
        .map(|m| m.len())
        .unwrap_or(0);
    let _ = child.kill();
    let _ = child.wait();
    println!("keys={keys} projects={projects} load_connections={conns}");
    println!(
        "control plane publish round: read {read:?}, read+compile+sign+serialise {compiled:?} ({} bytes)",
        envelope.len()
    );
    println!(
        "controlplane_snapshot_compile_seconds (commit to signed), mean over {compile_count} snapshots: {:.3} s",
        compile_sum / compile_count
    );
    println!(
        "snapshot size on the wire / on disk: {:.1} MiB",
        lkg_bytes as f64 / 1048576.0
    );
    println!("change committed -> big snapshot serving on the gateway: {applied:?}");
    println!(
        "gateway RSS: {:.1} MiB small config, {:.1} MiB with {keys} keys (+{:.1} MiB)",
        rss_small as f64 / 1024.0,
        rss_big as f64 / 1024.0,
        (rss_big as f64 - rss_small as f64) / 1024.0
    );
    println!(
        "requests during the swap: {} sent, {} failed",
        sent.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed)
    );
    let _ = std::fs::remove_dir_all(&dir);
    if failed.load(Ordering::Relaxed) > 0 {
        std::process::exit(1);
    }
}
