-- Ownership of provider objects (files, batches, stored responses...) reported by gateways:
-- one row per object and provider account (org, provider), owned by the project that created
-- it. The first report wins; a deletion is a tombstone (deleted_at_ms), so a late or retried
-- creation report cannot bring the object back. `id` is the cursor gateways page by.
CREATE TABLE provider_objects (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    org TEXT NOT NULL,
    provider TEXT NOT NULL,
    object_id TEXT NOT NULL,
    project TEXT NOT NULL,
    kind TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    deleted_at_ms BIGINT,
    UNIQUE (org, provider, object_id)
);
CREATE INDEX provider_objects_project ON provider_objects (org, project, id);
