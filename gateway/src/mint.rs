//! `gateway mint-key`: a new virtual key, shown once, with the YAML to add to a project.

use gateway_schema::{MintedKey, Slug};

/// Mints a key for `project` and returns the text to print.
pub fn mint(project: &str) -> anyhow::Result<String> {
    let slug = Slug::parse(project).map_err(|e| anyhow::anyhow!("--project: {e}"))?;
    let key = MintedKey::generate()?;
    Ok(format!(
        "Virtual key for project `{slug}` (shown once; store it now, the gateway keeps only its digest):\n\n    {}\n\nAdd this under `projects: - slug: {slug}` → `keys:` in your config, then save (or send SIGHUP):\n\n      - digest: \"{}\"\n        prefix: \"{}\"\n",
        key.plaintext.expose(),
        key.digest,
        key.display_prefix,
    ))
}
