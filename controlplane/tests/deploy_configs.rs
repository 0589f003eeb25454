//! The control-plane config shipped in `deploy/kubernetes` loads and validates as the binary
//! loads it (its secrets are files that exist only in a cluster).

use std::path::Path;

use controlplane::config::Config;

#[test]
fn kubernetes_controlplane_config_loads_with_oidc_tls_and_file_secrets() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/kubernetes/components/controlplane/controlplane.yaml");
    let cfg = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        cfg.oidc.is_some(),
        "production config must verify OIDC tokens"
    );
    assert!(
        cfg.server.tls.is_some(),
        "the API serves TLS in the cluster"
    );
    assert_eq!(cfg.server.listen.port(), 8081);
    assert_eq!(cfg.server.admin_listen.port(), 9091);
    assert!(cfg.database.url.is_some());
    assert!(
        cfg.snapshots.signing_key.is_some(),
        "the control plane must sign snapshots for its gateways"
    );
}
