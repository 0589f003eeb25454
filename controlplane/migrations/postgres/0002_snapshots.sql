-- Compiled, signed snapshots (newest wins; a few are kept) and the gateways that report.
CREATE TABLE snapshots (
    version BIGINT PRIMARY KEY,
    content_sha256 TEXT NOT NULL,
    envelope TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE gateways (
    id TEXT PRIMARY KEY,
    address TEXT NOT NULL,
    source_addr TEXT NOT NULL,
    version BIGINT NOT NULL,
    unresolved TEXT NOT NULL,
    last_error TEXT,
    last_seen_ms BIGINT NOT NULL
);
