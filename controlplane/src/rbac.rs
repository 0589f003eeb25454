//! Role-based access control: roles per org, mapped from group claims in config.
//!
//! `admin` > `editor` > `viewer` for configuration; `auditor` only reads the audit log and
//! guardrail block records.
//! A grant on org `*` applies to every org, and is what org creation and the audit log need.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::auth::Identity;
use crate::config::RbacConfig;
use crate::error::ApiError;

/// A role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything in the org, including deleting it.
    Admin,
    /// Create, change and delete configuration.
    Editor,
    /// Read configuration.
    Viewer,
    /// Read the audit log and guardrail block records.
    Auditor,
}

impl Role {
    /// The role's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Editor => "editor",
            Self::Viewer => "viewer",
            Self::Auditor => "auditor",
        }
    }
}

/// What an endpoint needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Read an org's configuration: viewer, editor or admin on the org.
    ConfigRead,
    /// Change an org's configuration: editor or admin on the org.
    ConfigWrite,
    /// Delete the org: admin on the org.
    OrgAdmin,
    /// Create an org: admin on `*`.
    CreateOrg,
    /// Read the audit log: auditor or admin on `*`.
    ReadAudit,
    /// List gateways (they serve every org): viewer, editor or admin on `*`.
    ReadGateways,
    /// Read an org's guardrail block records: auditor or admin on the org (or on `*`).
    ReadGuardrailBlocks,
}

impl Need {
    fn roles(self) -> &'static [Role] {
        match self {
            Self::ConfigRead | Self::ReadGateways => &[Role::Admin, Role::Editor, Role::Viewer],
            Self::ConfigWrite => &[Role::Admin, Role::Editor],
            Self::OrgAdmin | Self::CreateOrg => &[Role::Admin],
            Self::ReadAudit | Self::ReadGuardrailBlocks => &[Role::Admin, Role::Auditor],
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::ConfigRead => "viewer, editor or admin",
            Self::ConfigWrite => "editor or admin",
            Self::OrgAdmin => "admin",
            Self::CreateOrg => "admin (on every org, `*`)",
            Self::ReadAudit => "auditor or admin (on every org, `*`)",
            Self::ReadGateways => "viewer, editor or admin (on every org, `*`)",
            Self::ReadGuardrailBlocks => "auditor or admin",
        }
    }
}

/// The roles one caller holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// Roles on every org.
    pub global: BTreeSet<Role>,
    /// Roles per org slug.
    pub per_org: BTreeMap<String, BTreeSet<Role>>,
    /// Whether admin came from the break-glass allowlist.
    pub break_glass: bool,
}

/// The decision for one request: the role that granted it, for the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Granted(pub String);

impl Grants {
    /// Resolves a caller's grants from the config's mapping.
    pub fn resolve(cfg: &RbacConfig, id: &Identity) -> Self {
        let mut g = Grants::default();
        for gr in &cfg.group_roles {
            if id.groups.iter().any(|x| x == &gr.group) {
                if gr.org == "*" {
                    g.global.insert(gr.role);
                } else {
                    g.per_org.entry(gr.org.clone()).or_default().insert(gr.role);
                }
            }
        }
        if id.email_verified {
            if let Some(email) = &id.email {
                if cfg.break_glass_admins.contains(email) {
                    g.global.insert(Role::Admin);
                    g.break_glass = true;
                }
            }
        }
        g
    }

    /// Whether the caller holds any role on `org` (or globally).
    pub fn has_any(&self, org: &str) -> bool {
        !self.global.is_empty() || self.per_org.get(org).is_some_and(|r| !r.is_empty())
    }

    /// Whether the caller holds any role at all.
    pub fn is_empty(&self) -> bool {
        self.global.is_empty() && self.per_org.values().all(BTreeSet::is_empty)
    }

    /// Decides `need` on `org` (None for global needs). A caller with no role on the org gets
    /// 404, so the existence of other tenants' orgs does not leak; one with a weaker role, 403.
    pub fn authorize(&self, org: Option<&str>, need: Need) -> Result<Granted, ApiError> {
        for role in need.roles() {
            if self.global.contains(role) {
                let how = if self.break_glass && *role == Role::Admin {
                    " (break-glass)"
                } else {
                    ""
                };
                return Ok(Granted(format!("{}@*{how}", role.as_str())));
            }
            if let Some(o) = org {
                if self.per_org.get(o).is_some_and(|r| r.contains(role)) {
                    return Ok(Granted(format!("{}@{o}", role.as_str())));
                }
            }
        }
        match org {
            Some(o) if !self.has_any(o) => Err(ApiError::not_found("org")),
            _ => Err(ApiError::forbidden(need.describe())),
        }
    }

    /// The orgs the caller may list: None means all.
    pub fn visible_orgs(&self) -> Option<Vec<String>> {
        if self.global.iter().any(|r| *r != Role::Auditor) {
            return None;
        }
        Some(
            self.per_org
                .iter()
                .filter(|(_, roles)| roles.iter().any(|r| *r != Role::Auditor))
                .map(|(o, _)| o.clone())
                .collect(),
        )
    }

    /// A short summary for the audit log when no decision was made.
    pub fn summary(&self) -> String {
        let mut parts: Vec<String> = self
            .global
            .iter()
            .map(|r| format!("{}@*", r.as_str()))
            .collect();
        for (o, roles) in &self.per_org {
            parts.extend(roles.iter().map(|r| format!("{}@{o}", r.as_str())));
        }
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(",")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GroupRole;

    fn id(groups: &[&str], email: Option<&str>, verified: bool) -> Identity {
        Identity {
            issuer: "https://issuer.test".into(),
            subject: "u1".into(),
            email: email.map(str::to_owned),
            email_verified: verified,
            groups: groups.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn cfg() -> RbacConfig {
        RbacConfig {
            group_roles: vec![
                GroupRole {
                    group: "ops".into(),
                    org: "*".into(),
                    role: Role::Admin,
                },
                GroupRole {
                    group: "acme-view".into(),
                    org: "acme".into(),
                    role: Role::Viewer,
                },
            ],
            break_glass_admins: ["root@example.com".to_owned()].into(),
        }
    }

    #[test]
    fn break_glass_needs_a_verified_email() {
        let c = cfg();
        let unverified = Grants::resolve(&c, &id(&[], Some("root@example.com"), false));
        assert!(unverified.is_empty());
        let verified = Grants::resolve(&c, &id(&[], Some("root@example.com"), true));
        assert!(verified.authorize(None, Need::CreateOrg).is_ok());
    }

    #[test]
    fn viewer_reads_but_cannot_write_and_strangers_get_404() {
        let g = Grants::resolve(&cfg(), &id(&["acme-view"], None, false));
        assert!(g.authorize(Some("acme"), Need::ConfigRead).is_ok());
        assert_eq!(
            g.authorize(Some("acme"), Need::ConfigWrite)
                .map_err(|e| e.status.as_u16()),
            Err(403)
        );
        assert_eq!(
            g.authorize(Some("other"), Need::ConfigRead)
                .map_err(|e| e.status.as_u16()),
            Err(404)
        );
    }
}
