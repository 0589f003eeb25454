//! Guardrails: rules a project's policy applies to the text its users send (message contents,
//! system prompts, inputs), before anything goes upstream. Each rule names a built-in
//! [`Detector`] or a custom regular expression, and either blocks the request or redacts what
//! it matched.
//!
//! Patterns are compiled here, with the same limits, both when a snapshot is validated and when
//! the gateway installs it, so a pattern that validates is exactly a pattern that compiles. The
//! `regex` crate matches in time linear in the text (no backtracking), whatever the pattern.

use regex::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};
use serde::{Deserialize, Serialize};

/// Most rules in one project's guardrails.
pub const MAX_RULES: usize = 64;
/// Longest custom pattern, in bytes.
pub const MAX_PATTERN_LEN: usize = 1024;
/// Largest compiled program of one pattern (the `regex` crate's `size_limit`).
pub const PATTERN_SIZE_LIMIT: usize = 1 << 20;
/// Largest lazy-DFA cache of one pattern (`dfa_size_limit`).
pub const PATTERN_DFA_SIZE_LIMIT: usize = 2 << 20;
/// Largest compiled program of a project's whole rule set.
pub const SET_SIZE_LIMIT: usize = 8 << 20;
/// Largest lazy-DFA cache of a project's whole rule set.
pub const SET_DFA_SIZE_LIMIT: usize = 8 << 20;
/// Deepest nesting of groups and repetitions in a pattern.
pub const NEST_LIMIT: u32 = 64;

/// A built-in detector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Detector {
    /// OpenAI API keys: `sk-proj-…`, `sk-svcacct-…`, `sk-admin-…`, `sk-None-…` and legacy
    /// `sk-` followed by 20 or more letters and digits.
    OpenaiKey,
    /// Anthropic API keys: `sk-ant-api03-…` and the other `sk-ant-<kind><nn>-…` shapes.
    AnthropicKey,
    /// AWS access key ids: `AKIA`, `ASIA` and the other IAM prefixes, then 16 characters.
    AwsAccessKey,
    /// GitHub tokens: `ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_` and fine-grained `github_pat_`.
    GithubToken,
    /// Payment card numbers: 13 to 19 digits (optionally grouped by spaces or dashes) that
    /// pass the Luhn check.
    CardNumber,
    /// Email addresses.
    Email,
    /// IBANs: a known country code, that country's length, and a valid mod-97 check.
    Iban,
}

impl Detector {
    /// Every detector.
    pub const ALL: [Detector; 7] = [
        Detector::OpenaiKey,
        Detector::AnthropicKey,
        Detector::AwsAccessKey,
        Detector::GithubToken,
        Detector::CardNumber,
        Detector::Email,
        Detector::Iban,
    ];

    /// The name used in configs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OpenaiKey => "openai_key",
            Self::AnthropicKey => "anthropic_key",
            Self::AwsAccessKey => "aws_access_key",
            Self::GithubToken => "github_token",
            Self::CardNumber => "card_number",
            Self::Email => "email",
            Self::Iban => "iban",
        }
    }

    /// The candidate pattern. ASCII classes and ASCII word boundaries only, so the lazy DFA
    /// never has to give up on non-ASCII text. Card numbers and IBANs are then checked by the
    /// gateway (Luhn, mod 97), so a pattern match alone is not a detection.
    pub fn pattern(self) -> &'static str {
        match self {
            Self::OpenaiKey => {
                r"(?-u:\b)sk-(?:(?:proj|svcacct|admin|None)-[A-Za-z0-9_-]{20,}|[A-Za-z0-9]{20,})"
            }
            Self::AnthropicKey => r"(?-u:\b)sk-ant-[a-z]{2,8}[0-9]{2}-[A-Za-z0-9_-]{20,}",
            Self::AwsAccessKey => {
                r"(?-u:\b)(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|APKA|AROA)[A-Z0-9]{16}(?-u:\b)"
            }
            Self::GithubToken => {
                r"(?-u:\b)(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})(?-u:\b)"
            }
            Self::CardNumber => r"(?-u:\b)(?:[0-9][ -]?){12,18}[0-9](?-u:\b)",
            Self::Email => {
                r"[A-Za-z0-9._%+-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,}(?-u:\b)"
            }
            Self::Iban => r"(?-u:\b)[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}(?-u:\b)",
        }
    }
}

/// What a rule does when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuardrailAction {
    /// Refuse the request: 400 `guardrail_blocked`, naming the rule, never the text.
    Block,
    /// Replace each match with `[REDACTED:<rule id>]` and forward the request.
    Redact,
}

impl GuardrailAction {
    /// The name used in configs, metrics and ingest records.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Block => "block",
            Self::Redact => "redact",
        }
    }
}

/// One guardrail rule: exactly one of `detector` or `pattern`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardrailRule {
    /// Identifier within the project (1 to 64 of `[A-Za-z0-9_-]`): named in the error a
    /// blocked client gets, in metrics and in block records.
    pub id: String,
    /// A built-in detector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detector: Option<Detector>,
    /// A custom regular expression (Rust `regex` syntax; at most 1024 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// `block` or `redact`.
    pub action: GuardrailAction,
}

impl GuardrailRule {
    /// The pattern this rule compiles: its detector's or its own.
    pub fn source(&self) -> Option<&str> {
        match (&self.detector, &self.pattern) {
            (Some(d), None) => Some(d.pattern()),
            (None, Some(p)) => Some(p),
            _ => None,
        }
    }
}

/// Whether `id` is a valid rule id.
pub fn is_rule_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Compiles one pattern under the per-pattern limits.
pub fn compile_pattern(pattern: &str) -> Result<Regex, String> {
    if pattern.is_empty() || pattern.len() > MAX_PATTERN_LEN {
        return Err(format!("must be 1 to {MAX_PATTERN_LEN} bytes"));
    }
    RegexBuilder::new(pattern)
        .size_limit(PATTERN_SIZE_LIMIT)
        .dfa_size_limit(PATTERN_DFA_SIZE_LIMIT)
        .nest_limit(NEST_LIMIT)
        .build()
        .map_err(describe)
}

/// Compiles a project's rules into one set (pattern `i` is rule `i`), under the set limits.
pub fn compile_set<'a>(patterns: impl IntoIterator<Item = &'a str>) -> Result<RegexSet, String> {
    RegexSetBuilder::new(patterns)
        .size_limit(SET_SIZE_LIMIT)
        .dfa_size_limit(SET_DFA_SIZE_LIMIT)
        .nest_limit(NEST_LIMIT)
        .build()
        .map_err(describe)
}

/// A pattern error on one line (the `regex` crate draws a caret diagram over several).
fn describe(e: regex::Error) -> String {
    match e {
        regex::Error::CompiledTooBig(limit) => format!(
            "compiles to more than {limit} bytes; use fewer or smaller repetitions and alternatives"
        ),
        regex::Error::Syntax(s) => {
            let text = s
                .lines()
                .filter(|l| {
                    let t = l.trim();
                    !t.is_empty() && !t.chars().all(|c| matches!(c, '^' | '~' | ' '))
                })
                .collect::<Vec<_>>()
                .join(" ");
            format!("is not a valid regular expression: {text}")
        }
        other => format!("is not a valid regular expression: {other}"),
    }
}

/// Checks a project's rules; calls `err(field suffix, reason)` for each problem, where the
/// suffix is relative to the project (`guardrails[2].pattern`).
pub fn validate_rules(rules: &[GuardrailRule], err: &mut impl FnMut(String, String)) {
    if rules.len() > MAX_RULES {
        err(
            "guardrails".into(),
            format!("holds at most {MAX_RULES} rules"),
        );
        return;
    }
    let mut ids = std::collections::HashSet::new();
    let mut all_compile = true;
    for (i, r) in rules.iter().enumerate() {
        let at = |f: &str| format!("guardrails[{i}]{f}");
        if !is_rule_id(&r.id) {
            err(
                at(".id"),
                "must be 1 to 64 characters of [A-Za-z0-9_-]".into(),
            );
        } else if !ids.insert(r.id.as_str()) {
            err(at(".id"), "duplicate rule id in this project".into());
        }
        match (&r.detector, &r.pattern) {
            (Some(_), Some(_)) | (None, None) => {
                all_compile = false;
                err(at(""), "set exactly one of `detector` or `pattern`".into());
            }
            (None, Some(p)) => {
                if let Err(reason) = compile_pattern(p) {
                    all_compile = false;
                    err(at(".pattern"), reason);
                }
            }
            (Some(_), None) => {}
        }
    }
    if all_compile && !rules.is_empty() {
        if let Err(reason) = compile_set(rules.iter().filter_map(GuardrailRule::source)) {
            err("guardrails".into(), format!("the rules together: {reason}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(id: &str, detector: Option<Detector>, pattern: Option<&str>) -> GuardrailRule {
        GuardrailRule {
            id: id.into(),
            detector,
            pattern: pattern.map(str::to_owned),
            action: GuardrailAction::Block,
        }
    }

    fn problems(rules: &[GuardrailRule]) -> Vec<String> {
        let mut out = Vec::new();
        validate_rules(rules, &mut |f, r| out.push(format!("{f}: {r}")));
        out
    }

    #[test]
    fn every_builtin_compiles_alone_and_together() {
        for d in Detector::ALL {
            assert!(compile_pattern(d.pattern()).is_ok(), "{}", d.as_str());
        }
        assert!(compile_set(Detector::ALL.iter().map(|d| d.pattern())).is_ok());
    }

    #[test]
    fn bad_rules_are_named_by_field() {
        let p = problems(&[
            rule("ok", Some(Detector::Email), None),
            rule("ok", Some(Detector::Iban), None),
            rule("both", Some(Detector::Email), Some("x")),
            rule("neither", None, None),
            rule("bad id!", None, Some("a")),
            rule("unclosed", None, Some("(a")),
            rule("huge", None, Some(r"(?:\w{100}){100}")),
            rule("empty", None, Some("")),
        ]);
        for want in [
            "guardrails[1].id: duplicate rule id",
            "guardrails[2]: set exactly one",
            "guardrails[3]: set exactly one",
            "guardrails[4].id: must be 1 to 64",
            "guardrails[5].pattern: is not a valid regular expression",
            "guardrails[6].pattern: compiles to more than",
            "guardrails[7].pattern: must be 1 to 1024 bytes",
        ] {
            assert!(
                p.iter().any(|x| x.starts_with(want)),
                "missing {want:?} in {p:?}"
            );
        }
        assert!(!p.iter().any(|x| x.contains('\n')), "{p:?}");
    }

    #[test]
    fn too_many_rules_or_too_long_a_pattern_is_refused() {
        let many: Vec<GuardrailRule> = (0..=MAX_RULES)
            .map(|i| rule(&format!("r{i}"), Some(Detector::Email), None))
            .collect();
        assert_eq!(problems(&many), vec!["guardrails: holds at most 64 rules"]);
        let long = "a".repeat(MAX_PATTERN_LEN + 1);
        assert_eq!(
            problems(&[rule("long", None, Some(&long))]),
            vec!["guardrails[0].pattern: must be 1 to 1024 bytes"]
        );
    }
}
