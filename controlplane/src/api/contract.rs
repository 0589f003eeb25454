//! Keeps the API inside its own contract: unknown routes and wrong methods answer in the JSON
//! error shape, and the OpenAPI document lists every status an operation can return and the
//! slug rule of every path parameter.
//!
//! The statuses added here come from layers that wrap every handler (authentication, RBAC,
//! guards, extractors), so they are added to the generated document in one place instead of
//! being repeated, and forgotten, on each handler.

use axum::http::StatusCode;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, ResponseBuilder, Schema};

use crate::error::ApiError;

/// The slug rule as a regular expression (what `gateway_schema::Slug::parse` enforces).
pub const SLUG_PATTERN: &str = "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$";

/// Fallback for paths no route serves: 404 `not_found` in the error shape.
pub async fn unknown_route() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such API route; see /api/v1/openapi.json",
    )
}

/// Fallback for a known path with a method it does not serve: 405 `method_not_allowed`.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not accept this method; see /api/v1/openapi.json",
    )
}

/// In development mode identity comes from forwarded headers, not a bearer token: the document
/// says so, so that clients and contract testers send what this server actually checks.
pub fn document_dev_headers(doc: &mut OpenApi) {
    use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityRequirement, SecurityScheme};
    let components = doc.components.get_or_insert_with(Default::default);
    components.security_schemes.remove("bearer");
    components.add_security_scheme(
        "dev_headers",
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
            "X-Forwarded-Email",
            "development mode only: the caller's email, trusted as identity",
        ))),
    );
    doc.security = Some(vec![SecurityRequirement::new(
        "dev_headers",
        Vec::<String>::new(),
    )]);
}

/// Adds the statuses every operation can return and the slug rule on path parameters.
pub fn complete(doc: &mut OpenApi) {
    for item in doc.paths.paths.values_mut() {
        let ops = [
            (&mut item.get, false),
            (&mut item.put, true),
            (&mut item.post, true),
            (&mut item.delete, true),
            (&mut item.patch, true),
        ];
        for (op, mutating) in ops {
            if let Some(op) = op.as_mut() {
                complete_operation(op, mutating);
            }
        }
    }
}

fn complete_operation(op: &mut Operation, mutating: bool) {
    let mut has_path_params = false;
    for p in op.parameters.iter_mut().flatten() {
        if p.parameter_in == ParameterIn::Path {
            has_path_params = true;
            p.schema = Some(RefOr::T(Schema::Object(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(SLUG_PATTERN))
                    .min_length(Some(1))
                    .max_length(Some(63))
                    .build(),
            )));
        }
    }
    // Invalid path slug or query string; authentication; role on the org.
    let mut add = vec![
        ("400", "invalid slug, query string or body"),
        ("401", "no valid credentials"),
        ("403", "the caller's role does not allow this"),
    ];
    if has_path_params {
        add.push(("404", "the resource or its org does not exist"));
    }
    if mutating {
        add.push(("408", "the body was not received in time"));
        add.push(("409", "conflicts with the current state"));
        add.push(("413", "the body is larger than guards.max_body_bytes"));
        add.push(("429", "too many changes (global token bucket)"));
        add.push((
            "503",
            "the shared rate limiter is unavailable (fail closed)",
        ));
    }
    if op.request_body.is_some() {
        add.push(("415", "the body is not application/json"));
    }
    for (status, description) in add {
        op.responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| error_response(description));
    }
}

fn error_response(description: &str) -> RefOr<utoipa::openapi::Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build(),
    )
}
