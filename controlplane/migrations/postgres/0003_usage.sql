-- Usage records reported by gateways: one row per proxied request, idempotent on `id`.
CREATE TABLE usage_records (
    id TEXT PRIMARY KEY,
    request_id TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    org TEXT NOT NULL,
    project TEXT NOT NULL,
    key_id TEXT,
    provider TEXT NOT NULL,
    route TEXT NOT NULL,
    model TEXT NOT NULL,
    input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    cache_read_tokens BIGINT NOT NULL,
    cache_write_tokens BIGINT NOT NULL,
    cost_pico BIGINT NOT NULL,
    priced BIGINT NOT NULL,
    status BIGINT NOT NULL,
    latency_ms BIGINT NOT NULL,
    complete BIGINT NOT NULL
);
CREATE INDEX usage_records_org_at ON usage_records (org, at_ms);
CREATE INDEX usage_records_at ON usage_records (at_ms);
