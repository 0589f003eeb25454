CREATE TABLE orgs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    slug TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE policies (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id BIGINT NOT NULL REFERENCES orgs(id),
    slug TEXT NOT NULL,
    allowed_models TEXT,
    max_request_bytes BIGINT,
    requests_per_minute BIGINT,
    tokens_per_minute BIGINT,
    monthly_budget_cents BIGINT,
    created_at BIGINT NOT NULL,
    UNIQUE (org_id, slug)
);

CREATE TABLE projects (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id BIGINT NOT NULL REFERENCES orgs(id),
    slug TEXT NOT NULL,
    display_name TEXT NOT NULL,
    policy_id BIGINT REFERENCES policies(id),
    created_at BIGINT NOT NULL,
    UNIQUE (org_id, slug)
);

CREATE TABLE providers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id BIGINT NOT NULL REFERENCES orgs(id),
    slug TEXT NOT NULL,
    kind TEXT NOT NULL,
    base_url TEXT NOT NULL,
    api_key_ref TEXT,
    created_at BIGINT NOT NULL,
    UNIQUE (org_id, slug)
);

CREATE TABLE routes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id BIGINT NOT NULL REFERENCES orgs(id),
    slug TEXT NOT NULL,
    model TEXT NOT NULL,
    provider_id BIGINT NOT NULL REFERENCES providers(id),
    upstream_model TEXT,
    created_at BIGINT NOT NULL,
    UNIQUE (org_id, slug)
);

CREATE TABLE virtual_keys (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key_id TEXT NOT NULL UNIQUE,
    project_id BIGINT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    digest TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT
);

CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms BIGINT NOT NULL,
    actor_issuer TEXT,
    actor_subject TEXT,
    actor_email TEXT,
    role TEXT,
    action TEXT NOT NULL,
    resource TEXT NOT NULL,
    outcome TEXT NOT NULL,
    status BIGINT NOT NULL,
    reason TEXT,
    request_id TEXT NOT NULL,
    source_addr TEXT NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at_ms);
