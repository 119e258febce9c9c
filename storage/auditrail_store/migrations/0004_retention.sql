-- Retention contracts: one row per change (append-only: the history of who set what is itself evidence);
-- a tenant's contract is its latest row. retention.py renders them into the TTL of audit_events and of
-- otel_logs (ALTER TABLE ... MODIFY TTL), so ClickHouse itself expires rows; no DELETE runs from our code.
CREATE TABLE IF NOT EXISTS ${db}.`retention_contracts${local}` ${on_cluster} (
    `tenant_id` String,
    `days` UInt32 COMMENT 'rows older than this many days expire',
    `hold` Bool COMMENT 'legal hold: nothing of the tenant expires while true',
    `forced` Bool COMMENT 'set below the 365-day default with --force',
    `changed_at` DateTime64(6, 'UTC') DEFAULT now64(6),
    `changed_by` String DEFAULT '' COMMENT 'OS user or token that made the change'
) ENGINE = ${replicated}MergeTree()
ORDER BY (tenant_id, changed_at);

-- @cluster-only
CREATE TABLE IF NOT EXISTS ${db}.`retention_contracts` ${on_cluster} AS ${db}.`retention_contracts_local`
ENGINE = Distributed(${cluster}, ${db}, `retention_contracts_local`, cityHash64(tenant_id));

-- The raw table keeps audit rows exactly as long as audit_events does (same contract, keyed by the
-- record's audit.tenant_id; app logs without one get the default). The exporter creates otel_logs with
-- ttl_only_drop_parts = 1, which drops a part only when every row in it expired: one held tenant would then
-- keep every other tenant's rows of that day past their contract. Rows must expire one by one here.
ALTER TABLE ${db}.`otel_logs${local}` ${on_cluster} MODIFY SETTING ttl_only_drop_parts = 0;

ALTER TABLE ${db}.`otel_logs${local}` ${on_cluster} MODIFY TTL toDateTime(Timestamp) + toIntervalDay(365);
