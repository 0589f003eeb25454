//! The `model` field of a `multipart/form-data` body (audio transcriptions and translations,
//! image edits), found in the buffered body without copying it.
//!
//! A small strict parser rather than a crate: the gateway needs one text field out of a body
//! it already holds in memory, and `multer` (the usual crate) is a streaming parser that
//! would copy every part, file parts included, through its own buffers. This one only records
//! byte ranges; the one copy it ever makes is the rewritten body of an aliased model.
//!
//! Being strict is what keeps it safe: a body this parser reads differently from the
//! provider's parser could route one model and run another. So every boundary delimiter must
//! start a line (CRLF before it), and a body with two `model` fields is refused.

use std::ops::Range;

use bytes::{Bytes, BytesMut};
use memchr::memmem;

use crate::proxy::errors::Reject;

/// Longest header block of one part.
const MAX_PART_HEADERS: usize = 8 * 1024;

/// The boundary of a `multipart/form-data` content type; `None` for any other type.
pub fn boundary(content_type: &[u8]) -> Option<&str> {
    let ct = std::str::from_utf8(content_type).ok()?;
    let mut params = ct.split(';');
    let essence = params.next()?.trim();
    if !essence.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("boundary") {
            return None;
        }
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(v);
        (1..=70).contains(&v.len()).then_some(v)
    })
}

/// The byte range of the value of the text field `name` (a part without `filename`), or
/// `None` when the body has no such field. `Err(InvalidMultipart)` when the body is malformed
/// or has the field twice.
pub fn field(body: &[u8], boundary: &str, name: &str) -> Result<Option<Range<usize>>, Reject> {
    let mut delim = Vec::with_capacity(boundary.len() + 4);
    delim.extend_from_slice(b"\r\n--");
    delim.extend_from_slice(boundary.as_bytes());
    let bare = &delim[2..];

    // Every delimiter starts a line: no `--boundary` hides inside a part for a laxer parser.
    for at in memmem::find_iter(body, bare) {
        if at != 0 && (at < 2 || &body[at - 2..at] != b"\r\n") {
            return Err(Reject::InvalidMultipart);
        }
    }
    let finder = memmem::Finder::new(&delim);
    let mut pos = if body.starts_with(bare) {
        bare.len()
    } else {
        finder.find(body).ok_or(Reject::InvalidMultipart)? + delim.len()
    };
    let mut found = None;
    loop {
        let after = body.get(pos..).ok_or(Reject::InvalidMultipart)?;
        if after.starts_with(b"--") {
            return Ok(found); // the close delimiter; the epilogue is ignored
        }
        // Transport padding, then CRLF.
        let pad = after
            .iter()
            .take_while(|b| matches!(b, b' ' | b'\t'))
            .count();
        if !after[pad..].starts_with(b"\r\n") {
            return Err(Reject::InvalidMultipart);
        }
        let headers_start = pos + pad + 2;
        let headers_len =
            memmem::find(&body[headers_start..], b"\r\n\r\n").ok_or(Reject::InvalidMultipart)?;
        if headers_len > MAX_PART_HEADERS {
            return Err(Reject::InvalidMultipart);
        }
        let headers = &body[headers_start..headers_start + headers_len];
        let content_start = headers_start + headers_len + 4;
        let content_len = finder
            .find(&body[content_start..])
            .ok_or(Reject::InvalidMultipart)?;
        let content = content_start..content_start + content_len;
        if part_is_field(headers, name)? {
            if found.is_some() {
                return Err(Reject::InvalidMultipart);
            }
            found = Some(content.clone());
        }
        pos = content.end + delim.len();
    }
}

/// Whether a part's headers name the text field `name` (no `filename`).
fn part_is_field(headers: &[u8], name: &str) -> Result<bool, Reject> {
    let text = std::str::from_utf8(headers).map_err(|_| Reject::InvalidMultipart)?;
    let mut is_field = false;
    let mut encoded = false;
    for line in text.split("\r\n") {
        let (k, v) = line.split_once(':').ok_or(Reject::InvalidMultipart)?;
        let k = k.trim();
        if k.eq_ignore_ascii_case("content-transfer-encoding") {
            encoded = true;
        }
        if !k.eq_ignore_ascii_case("content-disposition") {
            continue;
        }
        let mut params = v.split(';');
        if !params
            .next()
            .is_some_and(|d| d.trim().eq_ignore_ascii_case("form-data"))
        {
            return Err(Reject::InvalidMultipart);
        }
        let mut part_name = None;
        let mut has_filename = false;
        for p in params {
            let Some((pk, pv)) = p.split_once('=') else {
                continue;
            };
            let pk = pk.trim();
            let pv = pv.trim();
            let pv = pv
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(pv);
            if pk.eq_ignore_ascii_case("name") {
                part_name = Some(pv);
            } else if pk.eq_ignore_ascii_case("filename") || pk.eq_ignore_ascii_case("filename*") {
                has_filename = true;
            }
        }
        is_field = part_name == Some(name) && !has_filename;
    }
    // A model encoded some other way could be read differently upstream.
    if is_field && encoded {
        return Err(Reject::InvalidMultipart);
    }
    Ok(is_field)
}

/// The `model` field's value, parsed as UTF-8 text.
pub fn model_of<'a>(body: &'a [u8], boundary: &str) -> Result<Option<&'a str>, Reject> {
    match field(body, boundary, "model")? {
        None => Ok(None),
        Some(r) => std::str::from_utf8(&body[r])
            .map(Some)
            .map_err(|_| Reject::InvalidMultipart),
    }
}

/// The body with the `model` field's value replaced by `model` (one copy of the body).
pub fn rewrite_model(body: &[u8], boundary: &str, model: &str) -> Result<Bytes, Reject> {
    let r = field(body, boundary, "model")?.ok_or(Reject::MissingModel)?;
    let mut out = BytesMut::with_capacity(body.len() - r.len() + model.len());
    out.extend_from_slice(&body[..r.start]);
    out.extend_from_slice(model.as_bytes());
    out.extend_from_slice(&body[r.end..]);
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: &str = "XyZ123";

    fn form(parts: &[(&str, Option<&str>, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, filename, value) in parts {
            out.extend_from_slice(format!("--{B}\r\n").as_bytes());
            match filename {
                Some(f) => out.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
                ),
                None => out.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
                ),
            }
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("--{B}--\r\n").as_bytes());
        out
    }

    #[test]
    fn boundary_from_content_type() {
        assert_eq!(boundary(b"multipart/form-data; boundary=abc"), Some("abc"));
        assert_eq!(
            boundary(b"Multipart/Form-Data; charset=utf-8; Boundary=\"a b\""),
            Some("a b")
        );
        assert_eq!(boundary(b"application/json"), None);
        assert_eq!(boundary(b"multipart/form-data"), None);
        assert_eq!(boundary(b"multipart/form-data; boundary="), None);
    }

    #[test]
    fn finds_the_model_field_among_file_parts() {
        let body = form(&[
            ("file", Some("a.wav"), "RIFF\r\n--XyZ12 not a boundary\r\n"),
            ("model", None, "whisper-1"),
            ("language", None, "en"),
        ]);
        assert_eq!(model_of(&body, B), Ok(Some("whisper-1")));
        let out = rewrite_model(&body, B, "gpt-4o-transcribe").unwrap_or_default();
        assert_eq!(model_of(&out, B), Ok(Some("gpt-4o-transcribe")));
        assert_eq!(
            out.len(),
            body.len() + "gpt-4o-transcribe".len() - "whisper-1".len()
        );
    }

    #[test]
    fn a_file_named_model_is_not_the_model_field() {
        let body = form(&[("model", Some("m.bin"), "x"), ("purpose", None, "batch")]);
        assert_eq!(model_of(&body, B), Ok(None));
    }

    #[test]
    fn no_model_field_is_none() {
        let body = form(&[("file", Some("a.jsonl"), "{}"), ("purpose", None, "batch")]);
        assert_eq!(model_of(&body, B), Ok(None));
    }

    #[test]
    fn ambiguous_bodies_are_refused() {
        // Two model fields: the provider might read the other one.
        let body = form(&[("model", None, "a"), ("model", None, "b")]);
        assert_eq!(model_of(&body, B), Err(Reject::InvalidMultipart));
        // A boundary not at the start of a line (a lax parser could split there).
        let mut body = form(&[("file", Some("f"), "x"), ("model", None, "a")]);
        body.splice(0..0, b"junk--XyZ123\n".iter().copied());
        assert_eq!(model_of(&body, B), Err(Reject::InvalidMultipart));
        // Bare LF line endings.
        let lf = format!("--{B}\nContent-Disposition: form-data; name=\"model\"\n\na\n--{B}--\n");
        assert!(model_of(lf.as_bytes(), B).is_err());
        // Truncated.
        let body = form(&[("model", None, "a")]);
        assert!(model_of(&body[..body.len() - 12], B).is_err());
        assert!(model_of(b"", B).is_err());
        // An encoded model.
        let enc = format!("--{B}\r\nContent-Disposition: form-data; name=\"model\"\r\nContent-Transfer-Encoding: base64\r\n\r\nYQ==\r\n--{B}--\r\n");
        assert_eq!(model_of(enc.as_bytes(), B), Err(Reject::InvalidMultipart));
    }

    #[test]
    fn no_truncation_or_byte_change_makes_it_panic() {
        let body = form(&[
            ("file", Some("a.wav"), "RIFF\r\n\r\n--"),
            ("model", None, "whisper-1"),
        ]);
        for end in 0..=body.len() {
            let _ = model_of(&body[..end], B);
        }
        let mut mutated = body.clone();
        for i in 0..body.len() {
            for b in [b'\r', b'\n', b'-', b'"', b';', b':', 0, 0xff, b'X'] {
                mutated[i] = b;
                let _ = model_of(&mutated, B);
                let _ = rewrite_model(&mutated, B, "m");
            }
            mutated[i] = body[i];
        }
    }

    #[test]
    fn preamble_and_padding_are_accepted() {
        let body = format!(
            "preamble\r\n--{B}  \r\nContent-Disposition: form-data; name=model\r\n\r\nwhisper-1\r\n--{B}--"
        );
        assert_eq!(model_of(body.as_bytes(), B), Ok(Some("whisper-1")));
    }
}
