//! The gateway configs shipped in `deploy/kubernetes` load exactly as the binary loads them
//! (parse + validation; their secrets are files that exist only in a cluster).

use std::path::Path;

use gateway::config::GatewayFile;
use gateway_schema::SecretRef;

fn load(rel: &str) -> GatewayFile {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel);
    GatewayFile::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn kubernetes_standalone_gateway_config_loads_and_listens_on_the_manifest_ports() {
    let f = load("deploy/kubernetes/components/gateway/gateway.yaml");
    assert_eq!(f.server.listen, "0.0.0.0:8080");
    assert_eq!(f.server.admin_listen, "0.0.0.0:9090");
    assert!(f.server.control_plane.is_none());
    assert!(!f.snapshot.providers.is_empty());
    for p in &f.snapshot.providers {
        assert!(
            matches!(p.api_key, Some(SecretRef::File(_))),
            "provider {} key must be a mounted file",
            p.name
        );
    }
}

#[test]
fn kubernetes_control_plane_mode_gateway_config_loads_with_file_secrets() {
    let f = load("deploy/kubernetes/components/controlplane/gateway.yaml");
    assert_eq!(f.server.listen, "0.0.0.0:8080");
    assert_eq!(f.server.admin_listen, "0.0.0.0:9090");
    let cp = f
        .server
        .control_plane
        .unwrap_or_else(|| panic!("control_plane settings missing"));
    assert_eq!(cp.url.as_str(), "https://ai-gateway-controlplane:8081/");
    for secret in [
        Some(&cp.internal_secret),
        Some(&cp.public_key),
        cp.usage_ingest_token.as_ref(),
        cp.cache_hits_ingest_token.as_ref(),
        cp.guardrail_blocks_ingest_token.as_ref(),
        cp.objects_ingest_token.as_ref(),
    ] {
        assert!(
            matches!(secret, Some(SecretRef::File(_))),
            "every control-plane secret must be a mounted file"
        );
    }
    assert!(
        f.server.upstream_ca_bundle.is_some(),
        "gateways must trust the control plane's CA"
    );
    assert_eq!(
        cp.last_known_good,
        Path::new("/var/lib/ai-gateway/snapshot.json")
    );
}
