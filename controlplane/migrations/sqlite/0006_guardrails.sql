-- Policies may carry guardrail rules (a JSON array of {id, detector|pattern, action}).
ALTER TABLE policies ADD COLUMN guardrails TEXT;

-- Guardrail actions reported by gateways: one row per rule acting on a request, never the
-- matched text. `id` orders and pages; `record_id` (the gateway's) makes ingest idempotent.
CREATE TABLE guardrail_blocks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    record_id TEXT NOT NULL UNIQUE,
    request_id TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    org TEXT NOT NULL,
    project TEXT NOT NULL,
    key_id TEXT,
    rule_id TEXT NOT NULL,
    action TEXT NOT NULL
);
CREATE INDEX guardrail_blocks_org_at ON guardrail_blocks (org, at_ms);
CREATE INDEX guardrail_blocks_at ON guardrail_blocks (at_ms);
