-- source_ips: when each client address was first and last seen per tenant, kept up to date by
-- source_ips_mv from every audit_events insert, so Grafana's "Source IPs new this period" reads a few
-- thousand rows instead of scanning months of events (benchmarks/grafana.py). min/max are idempotent: a
-- retried copy of an event changes nothing, and the backfill below may run again after an interruption.
-- Keyed by tenant_id like audit_events, so a row policy on tenant_id scopes it the same way.
CREATE TABLE IF NOT EXISTS ${db}.`source_ips${local}` ${on_cluster} (
    `tenant_id` String,
    `source_ip` String,
    `first_seen` SimpleAggregateFunction(min, DateTime64(9, 'UTC')),
    `last_seen` SimpleAggregateFunction(max, DateTime64(9, 'UTC'))
) ENGINE = ${replicated}AggregatingMergeTree
ORDER BY (tenant_id, source_ip);

-- @cluster-only
CREATE TABLE IF NOT EXISTS ${db}.`source_ips` ${on_cluster} AS ${db}.`source_ips_local`
ENGINE = Distributed(${cluster}, ${db}, `source_ips_local`, cityHash64(tenant_id, source_ip));

CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.`source_ips_mv${local}` ${on_cluster}
TO ${db}.`source_ips${local}`
AS SELECT tenant_id, assumeNotNull(source_ip) AS source_ip, min(timestamp) AS first_seen, max(timestamp) AS last_seen
FROM ${db}.`audit_events${local}`
WHERE source_ip IS NOT NULL
GROUP BY tenant_id, source_ip;

-- The events stored before this migration (on a cluster: through the Distributed tables, once; an address
-- may then sit on several shards, which readers' GROUP BY folds, as it folds unmerged parts).
INSERT INTO ${db}.`source_ips`
SELECT tenant_id, assumeNotNull(source_ip), min(timestamp), max(timestamp)
FROM ${db}.`audit_events`
WHERE source_ip IS NOT NULL
GROUP BY tenant_id, source_ip;
