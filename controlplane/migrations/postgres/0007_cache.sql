-- Policies may enable the response cache: a JSON object (enabled, ttl_seconds,
-- max_entry_bytes, allow), or NULL for no cache.
ALTER TABLE policies ADD COLUMN cache TEXT;

-- Cache hits reported by gateways: one row per response served from the cache, idempotent
-- on `id`. What each hit saved: the stored response's tokens and their cost.
CREATE TABLE cache_hits (
    id TEXT PRIMARY KEY,
    request_id TEXT NOT NULL,
    source_request_id TEXT NOT NULL,
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
    cost_saved_pico BIGINT NOT NULL,
    priced BIGINT NOT NULL
);
CREATE INDEX cache_hits_org_at ON cache_hits (org, at_ms);
CREATE INDEX cache_hits_at ON cache_hits (at_ms);
