//! Slug validation of path parameters and body fields: 400 `invalid_slug` naming the rule.

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use gateway_schema::Slug;

use crate::error::ApiError;

/// Parses one slug, naming the field and the broken rule on failure.
pub fn parse(field: &str, value: &str) -> Result<Slug, ApiError> {
    Slug::parse(value).map_err(|e| {
        ApiError::bad_request(
            "invalid_slug",
            format!(
                "`{field}` is not a valid slug: it {e} (slugs are lowercase letters, digits and inner hyphens, 1 to 63 characters)"
            ),
        )
    })
}

/// Every path parameter of a request, each validated as a slug.
pub struct PathSlugs(Vec<(String, Slug)>);

impl PathSlugs {
    /// The parameter `name`.
    pub fn get(&self, name: &str) -> Result<&Slug, ApiError> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s)
            .ok_or_else(ApiError::internal)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for PathSlugs {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(raw): Path<Vec<(String, String)>> =
            Path::from_request_parts(parts, state).await.map_err(|_| {
                ApiError::bad_request(
                    "invalid_slug",
                    "a path parameter is not valid UTF-8 or not a valid slug",
                )
            })?;
        let mut out = Vec::with_capacity(raw.len());
        for (name, value) in raw {
            let slug = parse(&name, &value)?;
            out.push((name, slug));
        }
        Ok(Self(out))
    }
}
