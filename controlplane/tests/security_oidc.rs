//! OIDC identity under attack, against a real local issuer (discovery + JWKS over a socket)
//! with RSA and EC keys. Every rejected token must give 401 AND an audit record.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use common::{now, Env, TestKey, AUD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

/// Sends `token` to a protected endpoint; asserts 401 and an audit record with `reason`.
async fn assert_rejected(env: &Env, token: &str, reason: &str) {
    let rid = common::unique("rid");
    let resp = env
        .server
        .req(reqwest::Method::GET, "/api/v1/orgs", Some(token))
        .header("x-request-id", &rid)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "token for {reason} was accepted");
    assert_eq!(resp.headers()["www-authenticate"], "Bearer");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthenticated");
    let rec = env
        .server
        .audit_for(&env.admin(), &rid)
        .await
        .unwrap_or_else(|| panic!("no audit record for rejected token ({reason})"));
    assert_eq!(rec["status"], 401);
    assert_eq!(rec["outcome"], "denied");
    assert_eq!(rec["reason"], reason, "{rec}");
    assert!(
        rec["actor_subject"].is_null(),
        "unverified identity recorded: {rec}"
    );
    assert_eq!(rec["action"], "GET /api/v1/orgs");
    assert!(rec["source_addr"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
}

fn b64(v: &Value) -> String {
    B64.encode(serde_json::to_vec(v).unwrap())
}

async fn accepted(env: &Env, token: &str) -> bool {
    let (st, _) = common::send(
        env.server
            .req(reqwest::Method::GET, "/api/v1/orgs", Some(token)),
    )
    .await;
    st == 200
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsa_and_ec_tokens_from_the_issuer_are_accepted() {
    let env = Env::start().await;
    let claims = env.issuer.claims("alice", &["acme-viewers"]);
    assert!(accepted(&env, &env.rsa.sign(&claims)).await);
    assert!(accepted(&env, &env.ec.sign(&claims)).await);
    // `aud` as an array containing our audience.
    let mut c = claims.clone();
    c["aud"] = json!(["someone-else", AUD]);
    assert!(accepted(&env, &env.rsa.sign(&c)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_invalid_tokens_are_rejected_and_audited() {
    let env = Env::start().await;
    let good = env.issuer.claims("mallory", &["platform-admins"]);

    // alg: none.
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT", "kid": "rsa-1"})),
        b64(&good)
    );
    assert_rejected(&env, &none, "malformed_token").await;

    // HS256 "signed" with the RSA public key (the classic key-confusion attack).
    let pubkey = common::fixture("test-only-rsa-1.pub.pem");
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some("rsa-1".into());
    let confused =
        jsonwebtoken::encode(&h, &good, &EncodingKey::from_secret(&pubkey).unwrap()).unwrap();
    assert_rejected(&env, &confused, "bad_algorithm").await;

    // PS256 claimed for an EC key: the algorithm comes from the key.
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some("rsa-1".into());
    let wrong_family = jsonwebtoken::encode(&h, &good, &env.ec.enc).unwrap();
    assert_rejected(&env, &wrong_family, "bad_algorithm").await;

    // Signature stripped.
    let real = env.rsa.sign(&good);
    let (unsigned, _) = real.rsplit_once('.').unwrap();
    assert_rejected(&env, &format!("{unsigned}."), "bad_signature").await;

    // Signature swapped: elevated claims with the signature of a harmless token.
    let harmless = env.rsa.sign(&env.issuer.claims("mallory", &[]));
    let sig = harmless.rsplit('.').next().unwrap();
    let header = real.split('.').next().unwrap();
    let elevated = b64(&good);
    assert_rejected(&env, &format!("{header}.{elevated}.{sig}"), "bad_signature").await;

    // Expired (beyond the leeway) and not yet valid.
    let mut c = good.clone();
    c["exp"] = json!(now() - 120);
    assert_rejected(&env, &env.rsa.sign(&c), "expired").await;
    let mut c = good.clone();
    c["nbf"] = json!(now() + 120);
    assert_rejected(&env, &env.rsa.sign(&c), "not_yet_valid").await;

    // Audience: wrong, missing, numeric, array without ours.
    let mut c = good.clone();
    c["aud"] = json!("another-api");
    assert_rejected(&env, &env.rsa.sign(&c), "bad_audience").await;
    let mut c = good.clone();
    c.as_object_mut().unwrap().remove("aud");
    assert_rejected(&env, &env.rsa.sign(&c), "bad_claims").await;
    let mut c = good.clone();
    c["aud"] = json!(12345);
    assert_rejected(&env, &env.rsa.sign(&c), "bad_claims").await;
    let mut c = good.clone();
    c["aud"] = json!(["x", "y"]);
    assert_rejected(&env, &env.rsa.sign(&c), "bad_audience").await;

    // Issuer: wrong, missing, numeric, array.
    let mut c = good.clone();
    c["iss"] = json!("https://evil.example");
    assert_rejected(&env, &env.rsa.sign(&c), "bad_issuer").await;
    let mut c = good.clone();
    c.as_object_mut().unwrap().remove("iss");
    assert_rejected(&env, &env.rsa.sign(&c), "bad_claims").await;
    let mut c = good.clone();
    c["iss"] = json!(42);
    assert_rejected(&env, &env.rsa.sign(&c), "bad_claims").await;
    let mut c = good.clone();
    c["iss"] = json!([env.issuer.url.clone()]);
    assert_rejected(&env, &env.rsa.sign(&c), "bad_claims").await;

    // Missing sub / exp.
    for claim in ["sub", "exp"] {
        let mut c = good.clone();
        c.as_object_mut().unwrap().remove(claim);
        assert_rejected(&env, &env.rsa.sign(&c), "bad_claims").await;
    }

    // A token from another issuer reusing our kid, with its iss or ours.
    let other = TestKey::rsa("test-only-rsa-other-issuer.pem", "rsa-1");
    let mut c = good.clone();
    c["iss"] = json!("https://other-issuer.example");
    assert_rejected(&env, &other.sign(&c), "bad_signature").await;
    assert_rejected(&env, &other.sign(&good), "bad_signature").await;

    // Garbage, a token without kid, no token at all.
    assert_rejected(&env, "not-a-jwt", "malformed_token").await;
    let mut h = Header::new(Algorithm::RS256);
    h.kid = None;
    let no_kid = jsonwebtoken::encode(&h, &good, &env.rsa.enc).unwrap();
    assert_rejected(&env, &no_kid, "missing_kid").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_identity_headers_are_ignored_when_an_issuer_is_configured() {
    let env = Env::start().await;
    let rid = common::unique("rid");
    let resp = env
        .server
        .req(reqwest::Method::POST, "/api/v1/orgs", None)
        .header("x-forwarded-email", "breakglass@example.com")
        .header("x-forwarded-groups", "platform-admins")
        .header("x-request-id", &rid)
        .json(&json!({"slug": "pwned"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let rec = env.server.audit_for(&env.admin(), &rid).await.unwrap();
    assert_eq!(rec["reason"], "missing_token");
    assert_eq!(rec["status"], 401);

    // A viewer's real token plus spoofed admin headers stays a viewer.
    let viewer = env.token("vera", &["acme-viewers"]);
    let rid = common::unique("rid");
    let resp = env
        .server
        .req(reqwest::Method::POST, "/api/v1/orgs", Some(&viewer))
        .header("x-forwarded-groups", "platform-admins")
        .header("x-forwarded-email", "breakglass@example.com")
        .header("x-request-id", &rid)
        .json(&json!({"slug": "pwned"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let rec = env.server.audit_for(&env.admin(), &rid).await.unwrap();
    assert_eq!(rec["outcome"], "denied");
    assert_eq!(rec["actor_subject"], "vera");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn break_glass_admin_requires_a_verified_email() {
    let env = Env::start().await;
    let mut c = env.issuer.claims("oncall", &[]);
    c["email"] = json!("breakglass@example.com");
    c["email_verified"] = json!(false);
    let (st, _) = env
        .server
        .post("/api/v1/orgs", &env.rsa.sign(&c), json!({"slug": "bg"}))
        .await;
    assert_eq!(st, 403);
    c["email_verified"] = json!(true);
    let (st, _) = env
        .server
        .post("/api/v1/orgs", &env.rsa.sign(&c), json!({"slug": "bg"}))
        .await;
    assert_eq!(st, 201);
    let rec = env
        .server
        .audit(&env.admin())
        .await
        .into_iter()
        .find(|r| r["status"] == 201)
        .unwrap();
    assert_eq!(rec["role"], "admin@* (break-glass)");
    assert_eq!(rec["actor_email"], "breakglass@example.com");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kid_storm_triggers_at_most_one_jwks_fetch() {
    let env = Env::start().await;
    let admin = env.admin();
    // Warm: the admin token's audit reads below must not be what fetches.
    assert!(accepted(&env, &admin).await);
    let before = env.issuer.jwks_fetches();
    let claims = env.issuer.claims("storm", &["platform-admins"]);
    let mut tasks = Vec::new();
    for i in 0..60 {
        let token = env.rsa.sign_with_kid(&claims, &format!("random-kid-{i}"));
        let req = env
            .server
            .req(reqwest::Method::GET, "/api/v1/orgs", Some(&token));
        tasks.push(tokio::spawn(
            async move { req.send().await.unwrap().status() },
        ));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 401);
    }
    // The same unknown kid again: negative cache, no fetch.
    for _ in 0..20 {
        let token = env.rsa.sign_with_kid(&claims, "random-kid-0");
        assert!(!accepted(&env, &token).await);
    }
    let fetched = env.issuer.jwks_fetches() - before;
    assert!(fetched <= 1, "unknown kids caused {fetched} JWKS fetches");
    let unknown = env
        .server
        .audit(&admin)
        .await
        .into_iter()
        .filter(|r| r["reason"] == "unknown_kid")
        .count();
    assert_eq!(unknown, 80, "every rejected token is audited");
    assert!(env
        .server
        .metrics()
        .await
        .contains("controlplane_auth_failures_total{reason=\"unknown_kid\"} 80"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_keys_are_picked_up_and_removed_keys_stop_working() {
    let env = Env::start_with(|c| {
        let o = c.oidc.as_mut().unwrap();
        o.jwks_max_age_secs = 1;
        o.unknown_kid_refresh_interval_secs = 1;
    })
    .await;
    let claims = env.issuer.claims("rita", &["acme-viewers"]);
    assert!(accepted(&env, &env.ec.sign(&claims)).await);

    // Rotation: a new key appears; its first token triggers a refresh and is accepted.
    let rsa2 = TestKey::rsa("test-only-rsa-2.pem", "rsa-2");
    let ec2 = TestKey::ec("test-only-ec-2.pem", "ec-2");
    env.issuer.set_keys(&[&env.rsa, &rsa2, &ec2]);
    assert!(accepted(&env, &rsa2.sign(&claims)).await);
    assert!(accepted(&env, &ec2.sign(&claims)).await);

    // Removal: ec-1 is gone from the JWKS; once the cache ages it is rejected.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_rejected(&env, &env.ec.sign(&claims), "unknown_kid").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuer_outage_keeps_cached_keys_and_never_fails_open() {
    let env = Env::start_with(|c| {
        let o = c.oidc.as_mut().unwrap();
        o.jwks_max_age_secs = 1;
        o.unknown_kid_refresh_interval_secs = 1;
    })
    .await;
    let claims = env.issuer.claims("olga", &["acme-viewers"]);
    assert!(accepted(&env, &env.rsa.sign(&claims)).await);
    env.issuer.set_up(false);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Stale cache, issuer down: still verifying with the cached keys.
    assert!(accepted(&env, &env.rsa.sign(&claims)).await);
    assert!(accepted(&env, &env.ec.sign(&claims)).await);
    // But nothing unverifiable gets through.
    let newcomer = TestKey::rsa("test-only-rsa-2.pem", "rsa-2");
    assert_rejected(&env, &newcomer.sign(&claims), "unknown_kid").await;
    let mut c = claims.clone();
    c["exp"] = json!(now() - 3600);
    assert_rejected(&env, &env.rsa.sign(&c), "expired").await;
    assert!(env
        .server
        .metrics()
        .await
        .contains("controlplane_jwks_fetches_total{outcome=\"error\"}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symmetric_keys_in_the_jwks_are_never_used() {
    let env = Env::start().await;
    let secret = b"shared-secret-shared-secret-1234";
    env.issuer.add_raw_key(json!({
        "kty": "oct", "kid": "hmac-1", "alg": "HS256", "use": "sig", "k": B64.encode(secret)
    }));
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some("hmac-1".into());
    let claims = env.issuer.claims("h", &["platform-admins"]);
    let token =
        jsonwebtoken::encode(&h, &claims, &EncodingKey::from_secret(secret).unwrap()).unwrap();
    assert_rejected(&env, &token, "unknown_kid").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_with_a_different_issuer_is_refused() {
    let rsa = TestKey::rsa("test-only-rsa-1.pem", "rsa-1");
    let issuer = common::MockIssuer::start(&[&rsa]).await;
    *issuer.state.claimed_issuer.lock().unwrap() = Some(format!("{}/", issuer.url));
    let cfg = common::base_config(Some(&issuer.url), &common::temp_db());
    let server = common::TestServer::start(cfg).await;
    let token = rsa.sign(&issuer.claims("x", &["platform-admins"]));
    let (st, _) = server.get("/api/v1/orgs", &token).await;
    assert_eq!(st, 401);
    assert_eq!(
        issuer.jwks_fetches(),
        0,
        "keys fetched despite issuer mismatch"
    );
    assert!(server
        .metrics()
        .await
        .contains("controlplane_auth_failures_total{reason=\"keys_unavailable\"}"));
}
