//! The AI gateway's data plane: a Pingora proxy that authenticates virtual keys, caps and
//! buffers request bodies, routes OpenAI-compatible requests by model, injects provider keys
//! and streams responses back.
//!
//! Layout: [`config`] (the file) → [`state`] (compiled indexes) → [`live`] (the arc-swap owner,
//! reloaded by [`reload`]); the hot path is [`proxy`] with [`auth`], [`body`] and [`routing`];
//! governance is [`governance`] over [`limits`], [`usage`] and [`cost`]; [`guardrails`] scan
//! the text users send;
//! ops are [`admin`], [`metrics`], [`drain`]; [`control_plane`] takes signed snapshots from
//! the control plane instead of a file; [`server`] wires it together.

pub mod admin;
pub mod auth;
pub mod body;
pub mod body_model;
pub mod cache;
pub mod config;
pub mod connections;
pub mod control_plane;
pub mod cost;
pub mod default_provider;
pub mod downstream_tls;
pub mod drain;
pub mod endpoints;
pub mod governance;
pub mod guardrails;
pub mod ingest;
pub mod isolation;
pub mod json_scan;
pub mod limits;
pub mod live;
pub mod metrics;
pub mod mint;
pub mod multipart;
pub mod overload;
pub mod ownership;
pub mod pingora_log;
pub mod proxy;
pub mod reload;
pub mod request_id;
pub mod routing;
pub mod server;
pub mod state;
pub mod upstream_tls;
pub mod usage;
