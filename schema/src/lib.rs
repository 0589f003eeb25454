//! The config/snapshot schema shared by the gateway and the control plane.
//!
//! A [`Snapshot`] is everything a gateway enforces: providers (with *references* to their
//! secrets, never the secrets), routes, projects and their virtual-key digests. The control
//! plane compiles one after every change; the gateway's standalone mode reads the same shape
//! from a YAML file. [`Snapshot::validate`] checks every cross-field rule once, at the edge, so
//! the hot path never re-validates. This crate has no Pingora and no SQL in it.

pub mod cache;
pub mod guardrail_blocks;
pub mod guardrails;
pub mod key;
pub mod objects;
pub mod secret;
pub mod signed;
pub mod slug;
pub mod snapshot;
pub mod usage;
mod validate;

pub use cache::{CacheAllowance, CacheHitBatch, CacheHitRecord, CacheSpec};
pub use guardrail_blocks::{GuardrailBlockBatch, GuardrailBlockRecord};
pub use guardrails::{Detector, GuardrailAction, GuardrailRule};
pub use key::{KeyDigest, MintedKey};
pub use objects::{ObjectBatch, ObjectPage, ObjectRecord, OwnedObject};
pub use secret::{Secret, SecretRef, SecretResolveError};
pub use signed::{SignedSnapshot, SigningKey, VerifyError, VerifyingKey};
pub use slug::{Slug, SlugError};
pub use snapshot::{
    EndpointFamily, KeySpec, ModelPattern, OrgSpec, OrgView, PriceSpec, ProjectSpec, ProviderKind,
    ProviderSpec, RouteSpec, Snapshot, DEFAULT_MAX_REQUEST_BYTES, IMPLICIT_ORG,
};
pub use usage::{UsageBatch, UsageRecord};
pub use validate::{SchemaError, ValidationErrors, MAX_REQUEST_BYTES_LIMIT};
