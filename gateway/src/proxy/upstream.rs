//! The upstream phase: choose the peer, rewrite the request head (strip client credentials
//! and hop-by-hop headers, inject the provider key), and replay the buffered body.

use bytes::Bytes;
use gateway_schema::ProviderKind;
use http::header::{self, HeaderName, HeaderValue};
use pingora::http::RequestHeader;
use pingora::prelude::HttpPeer;
use pingora::proxy::Session;
use pingora::{Error, ErrorType};

use super::ctx::RequestCtx;

/// Headers that describe one connection, not the request (RFC 9110 §7.6.1), plus legacy ones.
/// Prebuilt names: removing by a `&str` would parse and validate the name on every request.
static HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
];

/// Client credentials and client-side account selectors: never forwarded to a provider.
static CLIENT_CREDENTIALS: [HeaderName; 6] = [
    header::AUTHORIZATION,
    HeaderName::from_static("x-api-key"),
    HeaderName::from_static("api-key"),
    header::COOKIE,
    HeaderName::from_static("openai-organization"),
    HeaderName::from_static("openai-project"),
];

/// Default `anthropic-version` when the client sent none.
const ANTHROPIC_VERSION: &str = "2023-06-01";
pub static ANTHROPIC_VERSION_HEADER: HeaderName = HeaderName::from_static("anthropic-version");
/// The gateway's request id, sent upstream and to the client.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request id as a header value (it is minted or checked to be header-safe on arrival).
pub fn request_id_value(id: &str) -> pingora::Result<HeaderValue> {
    HeaderValue::from_str(id).map_err(|_| internal("request id is not header-safe"))
}

fn internal(msg: &'static str) -> Box<Error> {
    Error::explain(ErrorType::InternalError, msg)
}

/// Builds the peer for the provider chosen in the request phase.
pub fn upstream_peer(
    _session: &mut Session,
    ctx: &mut RequestCtx,
) -> pingora::Result<Box<HttpPeer>> {
    let p = ctx
        .chosen_provider()
        .ok_or_else(|| internal("no provider chosen"))?;
    let addr = *p.addrs.load().first().ok_or_else(|| {
        Error::explain(
            ErrorType::ConnectNoRoute,
            "provider host does not resolve (yet)",
        )
        .into_up()
    })?;
    let mut peer = HttpPeer::new(addr, p.tls, p.host.clone());
    peer.options.connection_timeout = Some(p.connect_timeout);
    peer.options.total_connection_timeout = Some(p.connect_timeout * 2);
    peer.options.read_timeout = Some(p.read_timeout);
    peer.options.write_timeout = Some(p.read_timeout);
    peer.options.idle_timeout = Some(std::time::Duration::from_secs(60));
    peer.options.ca = crate::upstream_tls::roots();
    if ctx.upstream_started.is_none() {
        ctx.upstream_started = Some(std::time::Instant::now());
    }
    Ok(Box::new(peer))
}

/// Rewrites the request head for the provider.
pub fn upstream_request_filter(
    _session: &mut Session,
    req: &mut RequestHeader,
    ctx: &mut RequestCtx,
) -> pingora::Result<()> {
    let p = ctx
        .chosen_provider()
        .ok_or_else(|| internal("no provider chosen"))?;

    // Headers named in `Connection` are hop-by-hop too.
    let listed: Vec<String> = req
        .headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    for name in &listed {
        req.remove_header(name.as_str());
    }
    // A request carries a handful of headers: comparing their names with each name to strip
    // costs less than a hash lookup per name (fourteen, nearly all absent).
    for name in HOP_BY_HOP.iter().chain(&CLIENT_CREDENTIALS) {
        if req.headers.keys().any(|k| k == name) {
            req.remove_header(name);
        }
    }

    if let Some(path) = ctx.upstream_path.as_deref() {
        let uri = path
            .parse::<http::Uri>()
            .map_err(|_| Error::explain(ErrorType::InternalError, "invalid upstream path"))?;
        req.set_uri(uri);
    }
    // Names built once, and room made for all of them at once (see vendor/pingora-http).
    req.reserve_headers(6)?;
    req.insert_static_header(&header::HOST, p.host_header.clone())?;
    if let Some((name, value)) = &p.auth {
        req.insert_static_header(name, value.clone())?;
    }
    if p.kind == ProviderKind::Anthropic && !ctx.has_anthropic_version {
        req.insert_static_header(
            &ANTHROPIC_VERSION_HEADER,
            HeaderValue::from_static(ANTHROPIC_VERSION),
        )?;
    }
    req.insert_static_header(&X_REQUEST_ID, request_id_value(&ctx.request_id)?)?;
    // Usage is counted (and object ids read) from the response: ask for it uncompressed
    // (gzip is decoded anyway for usage; ownership treats it as unreadable).
    req.insert_static_header(
        &header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    )?;

    if let Some(body) = &ctx.body {
        req.remove_header(&header::TRANSFER_ENCODING);
        req.insert_static_header(&header::CONTENT_LENGTH, HeaderValue::from(body.len()))?;
    }
    // Each upstream attempt (retries included) gets the whole buffered body once.
    ctx.body_emitted = false;
    Ok(())
}

/// Emits the buffered body, which the request phase consumed, on the first callback of each
/// upstream attempt (the patched Pingora gives exactly one terminal callback for it).
pub fn request_body_filter(body: &mut Option<Bytes>, _end_of_stream: bool, ctx: &mut RequestCtx) {
    if let Some(buffered) = &ctx.body {
        *body = if ctx.body_emitted {
            None
        } else {
            Some(buffered.clone())
        };
        ctx.body_emitted = true;
    }
}
