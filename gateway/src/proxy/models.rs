//! `GET /v1/models/{model}`: answered from the route table, like `GET /v1/models`.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

use super::errors::Reject;
use crate::state::ActiveConfig;

/// The model id of a `/v1/models/{model}` path (one non-empty segment).
pub fn retrieve_id(path: &str) -> Option<&str> {
    path.strip_prefix("/v1/models/")
        .filter(|m| !m.is_empty() && !m.contains('/'))
}

/// Answers with the model object when the model is routed (exactly or by a prefix route) and
/// allowed for the project; 404 `model_not_found` otherwise, as for an unrouted model.
pub async fn write_model(
    session: &mut Session,
    cfg: &ActiveConfig,
    project_idx: usize,
    model: &str,
    request_id: &str,
) -> Result<(), Reject> {
    let project = &cfg.projects[project_idx];
    let route = cfg.orgs[project.org]
        .route(model)
        .filter(|_| project.allows(model))
        .ok_or(Reject::ModelNotFound)?;
    let owner = &*cfg.providers[route.provider].name;
    let body = Bytes::from(
        serde_json::json!({"id": model, "object": "model", "created": 0, "owned_by": owner})
            .to_string(),
    );
    let write = async {
        let mut h = ResponseHeader::build(200, Some(3))?;
        h.insert_header("content-type", "application/json")?;
        h.insert_header("content-length", body.len().to_string())?;
        h.insert_header("x-request-id", request_id)?;
        session.write_response_header(Box::new(h), false).await?;
        session.write_response_body(Some(body), true).await
    };
    write.await.map_err(|_| Reject::Internal)
}
