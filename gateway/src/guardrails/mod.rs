//! Guardrails: a project's rules run over the text its users send ([`text`]), on the buffered
//! body, before anything goes upstream. A `block` rule refuses the request (400
//! `guardrail_blocked`, naming the rule, never the text); a `redact` rule replaces each match
//! with `[REDACTED:<rule id>]` and the request goes on with every other byte of the body as
//! the client sent it.
//!
//! Cost: the rules are compiled once per snapshot into one [`RegexSet`], so each string is
//! scanned in one linear pass whatever the number of rules; only the rules that matched run
//! again (linearly) to locate their matches. The `regex` crate never backtracks, so a hostile
//! pattern or body cannot make a scan superlinear (`examples/guardrails_linear.rs` measures it).
//! What each rule did is counted and reported by [`report`].

pub mod detectors;
pub mod report;
pub mod text;

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use gateway_schema::guardrails::{compile_pattern, compile_set};
use gateway_schema::{GuardrailAction, GuardrailRule};
use regex::{Regex, RegexSet};

pub use report::{GuardrailReporter, Subject};
pub use text::Unparsable;

use crate::proxy::errors::Reject;

/// Applies a project's `rules` to the body about to be forwarded: refuses a blocked request,
/// replaces `body` with its redaction, counts and reports what each rule did.
///
/// Fails closed on a body the rules cannot read: a compressed body (`content-encoding`) is
/// refused with 415, and one that looks like JSON but does not parse with 400 `invalid_json`
/// (a more lenient parser upstream could otherwise read text the rules never saw). Any other
/// body (a multipart upload, no body) carries no messages and passes.
pub fn enforce(
    reporter: &GuardrailReporter,
    rules: &Guardrails,
    headers: &http::HeaderMap,
    body: &mut Option<Bytes>,
    who: Subject<'_>,
) -> Result<(), Reject> {
    let Some(sent) = body.as_ref().filter(|b| !b.is_empty()) else {
        return Ok(());
    };
    let encoded = headers
        .get_all("content-encoding")
        .iter()
        .any(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
    if encoded {
        return Err(Reject::UnsupportedContentEncoding);
    }
    let now_ms = crate::limits::now_ms();
    match rules.scan(sent) {
        Ok(Verdict::Pass) => Ok(()),
        Ok(Verdict::Block(i)) => {
            let rule = rules.rule(i).ok_or(Reject::Internal)?;
            reporter.record(who, &rule.id, GuardrailAction::Block, now_ms);
            Err(Reject::GuardrailBlocked {
                rule: rule.id.clone(),
            })
        }
        Ok(Verdict::Redacted {
            body: redacted,
            rules: acted,
        }) => {
            for i in acted {
                if let Some(rule) = rules.rule(i) {
                    reporter.record(who, &rule.id, GuardrailAction::Redact, now_ms);
                }
            }
            *body = Some(redacted);
            Ok(())
        }
        Err(Unparsable) if text::looks_like_json(sent) => Err(Reject::InvalidJson),
        Err(Unparsable) => Ok(()),
    }
}

use detectors::Check;

/// One compiled rule.
#[derive(Debug)]
pub struct Rule {
    /// The rule's id (a bounded metrics label: it comes from config).
    pub id: Arc<str>,
    /// What it does.
    pub action: GuardrailAction,
    regex: Regex,
    check: Option<Check>,
    replacement: String,
}

/// A project's compiled guardrails.
#[derive(Debug)]
pub struct Guardrails {
    rules: Vec<Rule>,
    /// Pattern `i` is `rules[i]`'s.
    set: RegexSet,
}

/// What the rules decided about one body.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing matched.
    Pass,
    /// Rule `0` (an index of [`Guardrails::rule`]) blocks the request: in the first string
    /// (body order) that a blocking rule matches, the first such rule (policy order).
    Block(usize),
    /// The body with every redacting match replaced, and the rules that redacted.
    Redacted {
        /// The body to forward.
        body: Bytes,
        /// Indexes of the rules that matched, ascending.
        rules: Vec<usize>,
    },
}

impl Guardrails {
    /// Compiles a project's rules (`None` when it has none). The snapshot has been validated
    /// with the same compiler and limits, so this fails only on a snapshot that skipped it.
    pub fn compile(rules: &[GuardrailRule]) -> Result<Option<Self>, String> {
        if rules.is_empty() {
            return Ok(None);
        }
        let mut compiled = Vec::with_capacity(rules.len());
        let mut sources = Vec::with_capacity(rules.len());
        for (i, r) in rules.iter().enumerate() {
            let source = r.source().ok_or_else(|| {
                format!("guardrails[{i}]: set exactly one of detector or pattern")
            })?;
            let regex =
                compile_pattern(source).map_err(|e| format!("guardrails[{i}].pattern: {e}"))?;
            sources.push(source);
            compiled.push(Rule {
                id: Arc::from(r.id.as_str()),
                action: r.action,
                regex,
                check: r.detector.and_then(detectors::check),
                replacement: format!("[REDACTED:{}]", r.id),
            });
        }
        let set = compile_set(sources).map_err(|e| format!("guardrails: {e}"))?;
        Ok(Some(Self {
            rules: compiled,
            set,
        }))
    }

    /// Rule `i`.
    pub fn rule(&self, i: usize) -> Option<&Rule> {
        self.rules.get(i)
    }

    /// Runs the rules over the user text of a JSON `body`. A body that is not a JSON object
    /// passes (it carries no messages); one that does not parse is [`Unparsable`].
    pub fn scan(&self, body: &[u8]) -> Result<Verdict, Unparsable> {
        let texts = text::user_texts(body)?;
        let mut redacted = vec![false; self.rules.len()];
        // (span of the string token in the body, its new token)
        let mut edits: Vec<(Range<usize>, String)> = Vec::new();
        for t in &texts {
            let matched = self.set.matches(&t.text);
            if !matched.matched_any() {
                continue;
            }
            let mut cuts: Vec<(Range<usize>, usize)> = Vec::new();
            for ri in matched.iter() {
                let rule = &self.rules[ri];
                let mut found = self.matches(rule, &t.text);
                match rule.action {
                    GuardrailAction::Block => {
                        if found.next().is_some() {
                            return Ok(Verdict::Block(ri));
                        }
                    }
                    GuardrailAction::Redact => {
                        let before = cuts.len();
                        cuts.extend(found.map(|r| (r, ri)));
                        redacted[ri] |= cuts.len() > before;
                    }
                }
            }
            if !cuts.is_empty() {
                edits.push((t.raw.clone(), self.redact(&t.text, cuts)));
            }
        }
        if edits.is_empty() {
            return Ok(Verdict::Pass);
        }
        Ok(Verdict::Redacted {
            body: splice(body, &edits),
            rules: (0..self.rules.len()).filter(|&i| redacted[i]).collect(),
        })
    }

    /// The byte ranges of `text` that `rule` detects (non-empty matches that pass its check).
    fn matches<'t>(
        &self,
        rule: &'t Rule,
        text: &'t str,
    ) -> impl Iterator<Item = Range<usize>> + 't {
        rule.regex
            .find_iter(text)
            .filter(|m| !m.is_empty())
            .filter_map(move |m| match rule.check {
                None => Some(m.range()),
                Some(check) => check(m.as_str()).map(|r| m.start() + r.start..m.start() + r.end),
            })
    }

    /// `text` with each cut replaced by its rule's marker (overlapping cuts merged, the first
    /// one's rule named), as a JSON string token.
    fn redact(&self, text: &str, mut cuts: Vec<(Range<usize>, usize)>) -> String {
        cuts.sort_by_key(|(r, _)| (r.start, std::cmp::Reverse(r.end)));
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for (r, ri) in cuts {
            if r.end <= at {
                continue; // inside a cut already made
            }
            if r.start < at {
                at = r.end; // overlaps the previous cut: extend it
                continue;
            }
            out.push_str(&text[at..r.start]);
            out.push_str(&self.rules[ri].replacement);
            at = r.end;
        }
        out.push_str(&text[at..]);
        // Escapes only `"`, `\` and control characters: a string the client sent without
        // escapes comes out byte for byte, but for the markers.
        serde_json::to_string(&out).unwrap_or_default()
    }
}

/// `body` with each `(range, replacement)` (sorted, disjoint) replaced; every other byte kept.
fn splice(body: &[u8], edits: &[(Range<usize>, String)]) -> Bytes {
    let grow: usize = edits.iter().map(|(_, s)| s.len()).sum();
    let mut out = Vec::with_capacity(body.len() + grow);
    let mut at = 0;
    for (r, s) in edits {
        out.extend_from_slice(&body[at..r.start]);
        out.extend_from_slice(s.as_bytes());
        at = r.end;
    }
    out.extend_from_slice(&body[at..]);
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_schema::Detector;

    fn rules(spec: &[(&str, Option<Detector>, Option<&str>, GuardrailAction)]) -> Guardrails {
        let rules: Vec<GuardrailRule> = spec
            .iter()
            .map(|(id, d, p, a)| GuardrailRule {
                id: (*id).into(),
                detector: *d,
                pattern: p.map(str::to_owned),
                action: *a,
            })
            .collect();
        match Guardrails::compile(&rules) {
            Ok(Some(g)) => g,
            other => panic!("{other:?}"),
        }
    }

    fn redacted(v: Result<Verdict, Unparsable>) -> (String, Vec<usize>) {
        match v {
            Ok(Verdict::Redacted { body, rules }) => {
                (String::from_utf8_lossy(&body).into_owned(), rules)
            }
            other => panic!("{other:?}"),
        }
    }

    use GuardrailAction::{Block, Redact};

    #[test]
    fn redaction_replaces_only_the_span_and_keeps_every_other_byte() {
        let g = rules(&[("mail", Some(Detector::Email), None, Redact)]);
        let body = r#"{ "model" : "gpt-4o", "temperature":0.30000000000000004,
  "messages":[{"role":"user","content":"write to a@b.io now"},{"role":"user","content":"\u00e9 c@d.org"}]}"#;
        let (out, rules) = redacted(g.scan(body.as_bytes()));
        assert_eq!(rules, vec![0]);
        let want = body
            .replace("a@b.io", "[REDACTED:mail]")
            .replace(r#""\u00e9 c@d.org""#, r#""é [REDACTED:mail]""#);
        assert_eq!(out, want);
    }

    #[test]
    fn the_first_blocking_match_wins_and_pass_is_pass() {
        let g = rules(&[
            ("mail", Some(Detector::Email), None, Redact),
            ("aws", Some(Detector::AwsAccessKey), None, Block),
            ("word", None, Some("(?i)secret"), Block),
        ]);
        let body = r#"{"messages":[{"role":"user","content":"x@y.com AKIAIOSFODNN7EXAMPLE"}],"prompt":"SECRET"}"#;
        assert_eq!(g.scan(body.as_bytes()), Ok(Verdict::Block(1)));
        assert_eq!(
            g.scan(br#"{"messages":[{"role":"user","content":"hello"}]}"#),
            Ok(Verdict::Pass)
        );
        assert_eq!(g.scan(b"not json at all"), Err(Unparsable));
    }

    #[test]
    fn overlapping_redactions_merge_and_empty_matches_are_ignored() {
        let g = rules(&[
            ("mail", Some(Detector::Email), None, Redact),
            ("corp", None, Some("corp"), Redact),
            ("nothing", None, Some("z*"), Block),
        ]);
        let (out, rules) = redacted(g.scan(br#"{"prompt":"ann@corp.com and corp"}"#));
        assert_eq!(out, r#"{"prompt":"[REDACTED:mail] and [REDACTED:corp]"}"#);
        assert_eq!(rules, vec![0, 1]);
    }

    #[test]
    fn look_alikes_do_not_trigger_checked_detectors() {
        let g = rules(&[
            ("card", Some(Detector::CardNumber), None, Block),
            ("iban", Some(Detector::Iban), None, Block),
        ]);
        for ok in [
            "order 4111 1111 1111 1112 shipped",
            "iban DE89370400440532013001",
            "call 0123456789",
        ] {
            let body = serde_json::json!({"prompt": ok}).to_string();
            assert_eq!(g.scan(body.as_bytes()), Ok(Verdict::Pass), "{ok}");
        }
        for bad in [
            "card 4111-1111-1111-1111.",
            "pay to GB82 WEST 1234 5698 7654 32",
        ] {
            let body = serde_json::json!({"prompt": bad}).to_string();
            assert!(
                matches!(g.scan(body.as_bytes()), Ok(Verdict::Block(_))),
                "{bad}"
            );
        }
    }
}
