-- audit_events_unique: audit_events with each event once, for analysts and Grafana (the store service
-- uses db.select_events, the same FINAL read with the tenant bound). A plain (SQL SECURITY INVOKER) view:
-- the reader's grants and row policy on audit_events still apply. Filters on tenant_id and timestamp reach
-- the sort key through the view. On a cluster it reads the Distributed table; each shard applies FINAL to
-- its own rows, which is complete because every copy of an event lands on one shard (0001).
CREATE VIEW IF NOT EXISTS ${db}.`audit_events_unique` ${on_cluster} AS
SELECT * FROM ${db}.`audit_events` FINAL;
