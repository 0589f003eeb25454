//! Slugs: the identifiers of orgs, projects and providers.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The longest slug accepted (a DNS label's limit).
pub const MAX_SLUG_LEN: usize = 63;

/// Why a string is not a slug. The message names the rule, so an API error can quote it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlugError {
    #[error("must be 1 to {MAX_SLUG_LEN} characters long (got {0})")]
    Length(usize),
    #[error("may contain only lowercase letters a-z, digits 0-9 and hyphens")]
    Charset,
    #[error("must not start or end with a hyphen")]
    EdgeHyphen,
}

/// A validated identifier: lowercase ASCII letters, digits and inner hyphens, 1 to 63
/// characters. Holding one proves the rule was checked, so it is safe in paths, labels and keys.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Slug(String);

impl Slug {
    /// Checks `s` against the slug rule.
    pub fn parse(s: &str) -> Result<Self, SlugError> {
        let len = s.chars().count();
        if len == 0 || len > MAX_SLUG_LEN {
            return Err(SlugError::Length(len));
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(SlugError::Charset);
        }
        if s.starts_with('-') || s.ends_with('-') {
            return Err(SlugError::EdgeHyphen);
        }
        Ok(Self(s.to_owned()))
    }

    /// The slug as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Slug {
    type Error = SlugError;
    fn try_from(s: String) -> Result<Self, SlugError> {
        Self::parse(&s)
    }
}

impl From<Slug> for String {
    fn from(s: Slug) -> String {
        s.0
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Slug {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_well_formed_slugs() {
        for ok in ["a", "demo", "team-42", "a1-b2-c3", &"x".repeat(63)] {
            assert!(Slug::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_each_rule_with_its_reason() {
        assert_eq!(Slug::parse(""), Err(SlugError::Length(0)));
        assert_eq!(Slug::parse(&"x".repeat(64)), Err(SlugError::Length(64)));
        assert_eq!(
            Slug::parse(&"x".repeat(10_000)),
            Err(SlugError::Length(10_000))
        );
        for bad in [
            "Demo", "a_b", "..", "%2e", "a\r\nb", "a:b", "a/b", "é", "a b",
        ] {
            assert_eq!(Slug::parse(bad), Err(SlugError::Charset), "{bad:?}");
        }
        assert_eq!(Slug::parse("-a"), Err(SlugError::EdgeHyphen));
        assert_eq!(Slug::parse("a-"), Err(SlugError::EdgeHyphen));
    }
}
