-- Policies may cap the requests a project has in flight on each gateway.
ALTER TABLE policies ADD COLUMN max_in_flight BIGINT;
