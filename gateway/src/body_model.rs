//! Where a buffered request body names its model: the JSON body's `model`, or the `model`
//! field of a `multipart/form-data` form ([`crate::multipart`]).

use std::borrow::Cow;

use bytes::Bytes;
use http::HeaderMap;

use crate::multipart;
use crate::proxy::errors::Reject;
use crate::routing;

/// A request body and how it is encoded.
pub struct BodyModel<'a> {
    body: Option<&'a Bytes>,
    /// The multipart boundary, for a form.
    form: Option<&'a str>,
}

impl<'a> BodyModel<'a> {
    /// Reads the encoding from `content-type`; an empty body is no body.
    pub fn new(headers: &'a HeaderMap, body: Option<&'a Bytes>) -> Self {
        Self {
            body: body.filter(|b| !b.is_empty()),
            form: headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|ct| multipart::boundary(ct.as_bytes())),
        }
    }

    /// The model, strictly: a body that is neither a JSON object nor a well-formed form is
    /// an error (the `/v1` surface routes by it).
    pub fn model(&self) -> Result<Option<Cow<'a, str>>, Reject> {
        match (self.body, self.form) {
            (Some(b), Some(boundary)) => Ok(multipart::model_of(b, boundary)?.map(Cow::Borrowed)),
            (Some(b), None) => routing::model_of(b),
            (None, _) => Ok(None),
        }
    }

    /// The model for the native surface, where a body need not be JSON: a body that is not
    /// JSON names none. A malformed form is still an error, since no provider reads one.
    pub fn model_if_any(&self) -> Result<Option<Cow<'a, str>>, Reject> {
        match self.model() {
            Err(Reject::InvalidJson) => Ok(None),
            other => other,
        }
    }

    /// The body with its model replaced by `model` (aliases).
    pub fn rewrite(&self, model: &str) -> Result<Option<Bytes>, Reject> {
        match (self.body, self.form) {
            (Some(b), Some(boundary)) => multipart::rewrite_model(b, boundary, model).map(Some),
            (Some(b), None) => routing::rewrite_model(b, model).map(Some),
            (None, _) => Ok(None),
        }
    }

    /// The body to scan for object references: any body but a well-formed form (a server
    /// that ignores the content type could read a "form" that is really JSON).
    pub fn scannable(&self) -> Option<&'a [u8]> {
        let body = self.body?;
        match self.form {
            Some(boundary) if multipart::field(body, boundary, "model").is_ok() => None,
            _ => Some(&body[..]),
        }
    }

    /// The body, if not empty.
    pub fn body(&self) -> Option<&'a Bytes> {
        self.body
    }
}
