//! Overload protection: one tenant filling its own limits must not take the gateway down for
//! the others.
//!
//! - [`budget`]: a global budget for the bytes held in request-body buffers. A request reserves
//!   its declared length (or grows its reservation chunk by chunk) before buffering; when the
//!   budget cannot cover it the gateway answers 503 `overloaded` at once and closes the
//!   connection. The reservation is released when the request's context drops, however the
//!   request ends.
//! - [`concurrency`]: in-flight caps per project (`max_in_flight` in the policy) and per
//!   gateway (`server.max_in_flight`); beyond them 429 `concurrency_limit`. Streams count
//!   until they end.
//!
//! `/readyz` stays 200 while the gateway sheds: shedding is per request and mostly per tenant,
//! and turning the replica unready would let one tenant take it out of rotation for everyone
//! (and move the same load onto the next replica).

pub mod budget;
pub mod concurrency;
