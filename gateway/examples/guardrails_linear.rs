//! Guardrail scans stay linear in the body size, even with hostile patterns: the project's
//! compiled rules (every built-in detector plus patterns that make a backtracking engine
//! explode: nested quantifiers, overlapping alternations, a 150-way alternation, about what the
//! 1024-byte pattern limit allows) scan 1, 5 and 10 MiB bodies made to hurt them (`aaaa…!` in
//! one message, and the same bytes split over many messages). Prints the time per size and the time per MiB relative to the 1 MiB run:
//! linear growth keeps that near 1.0.
//!
//!   cargo run --release -p gateway --example guardrails_linear

use std::time::{Duration, Instant};

use gateway::guardrails::{Guardrails, Verdict};
use gateway_schema::{Detector, GuardrailAction, GuardrailRule};

const MIB: usize = 1024 * 1024;

fn rules() -> Vec<GuardrailRule> {
    let mut out: Vec<GuardrailRule> = Detector::ALL
        .iter()
        .map(|d| GuardrailRule {
            id: d.as_str().replace('_', "-"),
            detector: Some(*d),
            pattern: None,
            action: GuardrailAction::Block,
        })
        .collect();
    let words: Vec<String> = (0..150).map(|i| format!("w{i:03}x")).collect();
    let alternation = format!("(?:{})+!", words.join("|"));
    let hostile = [
        r"(a+)+$".to_owned(),
        r"(a|aa)*b".to_owned(),
        r"(a|a?)+c".to_owned(),
        r"(x+x+)+y".to_owned(),
        r"([a-z]+)*=".to_owned(),
        r"(\w+\s?)*\$".to_owned(),
        r"(?:a*)*z".to_owned(),
        r"(.*a){12}q".to_owned(),
        r"^(([a-z])+.)+[A-Z]([a-z])+$".to_owned(),
        alternation,
    ];
    for (i, p) in hostile.into_iter().enumerate() {
        out.push(GuardrailRule {
            id: format!("hostile-{i}"),
            detector: None,
            pattern: Some(p),
            action: GuardrailAction::Block,
        });
    }
    out
}

/// One message of `size` bytes of `a` ending in `!` (no rule matches).
fn one_message(size: usize) -> Vec<u8> {
    let mut text = "a".repeat(size.saturating_sub(64));
    text.push('!');
    serde_json::to_vec(&serde_json::json!({
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": text}]
    }))
    .unwrap_or_default()
}

/// The same bytes as 1 KiB messages.
fn many_messages(size: usize) -> Vec<u8> {
    let mut text = "a".repeat(1000);
    text.push('!');
    let n = size / 1040;
    let messages: Vec<serde_json::Value> = (0..n)
        .map(|_| serde_json::json!({"role": "user", "content": text}))
        .collect();
    serde_json::to_vec(&serde_json::json!({"model": "gpt-4o", "messages": messages}))
        .unwrap_or_default()
}

fn time_scan(g: &Guardrails, body: &[u8]) -> Duration {
    let mut best = Duration::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        let v = g.scan(body);
        let elapsed = t.elapsed();
        assert!(matches!(v, Ok(Verdict::Pass)), "unexpected verdict {v:?}");
        best = best.min(elapsed);
    }
    best
}

fn main() {
    let rules = rules();
    let g = match Guardrails::compile(&rules) {
        Ok(Some(g)) => g,
        Ok(None) => return eprintln!("no rules"),
        Err(e) => return eprintln!("rules do not compile: {e}"),
    };
    println!(
        "{} rules: {} built-in detectors and {} hostile patterns",
        rules.len(),
        Detector::ALL.len(),
        rules.len() - Detector::ALL.len()
    );
    println!("| body | MiB | scan ms | MiB/s | ms per MiB / 1 MiB run's |");
    println!("|---|---|---|---|---|");
    for (name, make) in [
        ("one message", one_message as fn(usize) -> Vec<u8>),
        ("1 KiB messages", many_messages),
    ] {
        let mut base: Option<f64> = None;
        for mib in [1usize, 5, 10] {
            let body = make(mib * MIB);
            let t = time_scan(&g, &body);
            let ms = t.as_secs_f64() * 1000.0;
            let size_mib = body.len() as f64 / MIB as f64;
            let per_mib = ms / size_mib;
            let ratio = per_mib / *base.get_or_insert(per_mib);
            println!(
                "| {name} | {size_mib:.1} | {ms:.1} | {:.0} | {ratio:.2} |",
                size_mib / t.as_secs_f64()
            );
        }
    }
}
