//! The body cap: larger than the limit is 413, decided from `Content-Length` before reading
//! anything, or while reading a body without one (chunked), never buffering past the cap.

use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::error::ApiError;

fn too_large(cap: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("request body exceeds {cap} bytes"),
    )
}

/// Reads the body up to `cap` bytes within `timeout` and hands back a request holding it.
pub async fn buffer(req: Request, cap: usize, timeout: Duration) -> Result<Request, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.parse::<u64>());
    match declared {
        Some(Ok(n)) if n > cap as u64 => return Err(too_large(cap)),
        Some(Err(_)) => {
            return Err(ApiError::bad_request(
                "bad_content_length",
                "Content-Length is not a number",
            ))
        }
        _ => {}
    }
    let (parts, body) = req.into_parts();
    let read = tokio::time::timeout(timeout, Limited::new(body, cap).collect()).await;
    let Ok(read) = read else {
        return Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            format!(
                "the request body did not arrive within {}s",
                timeout.as_secs()
            ),
        ));
    };
    let bytes = match read {
        Ok(c) => c.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => return Err(too_large(cap)),
        Err(_) => {
            return Err(ApiError::bad_request(
                "body_read_failed",
                "the request body could not be read",
            ))
        }
    };
    Ok(Request::from_parts(parts, Body::from(bytes)))
}
