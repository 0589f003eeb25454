//! What a guardrail did, counted and reported: the `gateway_guardrail_actions_total` counter
//! (by `org/project`, rule id and action: config names, so bounded) and, in control-plane
//! mode, one [`GuardrailBlockRecord`] per rule acting on a request, through the generic
//! ingest queue (kind `guardrail-blocks`, its own token). Never the matched text.

use gateway_schema::{GuardrailAction, GuardrailBlockRecord};
use prometheus::{IntCounterVec, Opts, Registry};

use crate::ingest::IngestQueue;

/// Metrics and the optional ingest queue of guardrail actions.
pub struct GuardrailReporter {
    actions: IntCounterVec,
    ingest: Option<IngestQueue<GuardrailBlockRecord>>,
}

/// Who the request was, for the record.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// `x-request-id`.
    pub request_id: &'a str,
    /// Org slug.
    pub org: &'a str,
    /// Project slug.
    pub project: &'a str,
    /// `org/project`, the metrics label.
    pub label: &'a str,
    /// The key's id, when the snapshot names one.
    pub key_id: Option<&'a str>,
}

impl GuardrailReporter {
    /// Registers the counter in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let actions = IntCounterVec::new(
            Opts::new(
                "gateway_guardrail_actions_total",
                "Requests a guardrail rule blocked or redacted, by project, rule and action",
            ),
            &["project", "rule", "action"],
        )?;
        registry.register(Box::new(actions.clone()))?;
        Ok(Self {
            actions,
            ingest: None,
        })
    }

    /// Reports each action to the control plane through `queue`.
    pub fn with_ingest(mut self, queue: IngestQueue<GuardrailBlockRecord>) -> Self {
        self.ingest = Some(queue);
        self
    }

    /// Counts (and queues the record of) `rule` acting on a request.
    pub fn record(&self, who: Subject<'_>, rule: &str, action: GuardrailAction, now_ms: u64) {
        self.actions
            .with_label_values(&[who.label, rule, action.as_str()])
            .inc();
        if let Some(q) = &self.ingest {
            q.submit(GuardrailBlockRecord {
                id: crate::request_id::new_id(),
                request_id: who.request_id.to_owned(),
                at_ms: i64::try_from(now_ms).unwrap_or(i64::MAX),
                org: who.org.to_owned(),
                project: who.project.to_owned(),
                key_id: who.key_id.map(str::to_owned),
                rule_id: rule.to_owned(),
                action,
            });
        }
    }
}
