-- Endpoint families beyond inference a policy enables (JSON array of names, NULL: none), and
-- the provider for /v1 requests that name no model (a provider slug of the org, NULL: unset).
ALTER TABLE policies ADD COLUMN endpoints TEXT;
ALTER TABLE policies ADD COLUMN default_provider TEXT;
