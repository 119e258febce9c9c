-- audit_events ordered by (key_day, tenant_id, event_key): a live store's FINAL merges its newest day, not the
-- whole table.
--
-- Before (0012): ORDER BY (tenant_id, event_key). A part not merged yet (any recent insert) holds a few rows of
-- every tenant, so its one granule spans the keys from the first tenant's to the last's; FINAL (and the exact
-- mode of the skip indexes under FINAL: use_skip_indexes_if_final_exact_mode, which keeps the answer right for
-- a copy outside the time range) then had to read and merge every granule of every tenant in between: the
-- whole table for a 24 h Grafana panel (benchmarks/grafana.py --unmerged 5: 20.5 s at 10M events instead of
-- 0.3-0.5 s merged).
-- Now the key starts with key_day, the day of the time a UUIDv7 event id carries (emitters' ids,
-- instrumentation/auditrail): recent parts span today's keys (or the days of the events a late delivery
-- brings), so FINAL merges those days' granules and reads the others as they are; a time filter's granules
-- are also one day's rows of every tenant instead of each tenant's last granule. key_day is a function of
-- event_key alone, so every copy of an event id still has one sort key and meets the others in merges and in
-- FINAL (each event once, the first stored wins: 0012 unchanged). A key without UUIDv7 time (an id that is
-- another UUID version or no UUID, a content key) sorts after every day (65535), in (tenant_id, event_key)
-- order there as before. A tenant's rows are now one run per day instead of one run: exports (db.select_events)
-- read them in order by (key_day, event_key), which is event_key order for UUIDv7 ids.
--
-- Migrate and swap as 0012: copy every row with its version into the new table, swap, copy again what a
-- writer stored in between. The old table stays as audit_events_v2 (nothing here drops audit rows).
CREATE TABLE IF NOT EXISTS ${db}.`audit_events_next${local}` ${on_cluster} (
    `event_id` UUID COMMENT 'audit.event_id (UUIDv7)',
    `event_type` LowCardinality(String) COMMENT 'LogRecord EventName',
    `timestamp` DateTime64(9, 'UTC') COMMENT 'LogRecord time' CODEC(Delta(8), ZSTD(1)),
    `tenant_id` String COMMENT 'audit.tenant_id; * is global scope, empty when absent' CODEC(ZSTD(1)),
    `actor` Nullable(String) COMMENT 'enduser.id' CODEC(ZSTD(1)),
    `actor_type` LowCardinality(Nullable(String)) COMMENT 'audit.actor.type: user | service | system',
    `source_ip` Nullable(String) COMMENT 'client.address' CODEC(ZSTD(1)),
    `payload` Nullable(String) COMMENT 'audit.payload: JSON object text, as emitted' CODEC(ZSTD(3)),
    `reason` Nullable(String) COMMENT 'audit.reason' CODEC(ZSTD(1)),
    `outcome` LowCardinality(Nullable(String)) COMMENT 'audit.outcome: success | failure',
    `risk` LowCardinality(Nullable(String)) COMMENT 'audit.risk: low | medium | high | critical',
    `impersonator_id` Nullable(String) COMMENT 'audit.impersonator.id' CODEC(ZSTD(1)),
    `impersonation_id` Nullable(String) COMMENT 'audit.impersonation.id' CODEC(ZSTD(1)),
    `approval_id` Nullable(String) COMMENT 'audit.approval.id' CODEC(ZSTD(1)),
    `chain_id` Nullable(String) COMMENT 'audit.chain.id' CODEC(ZSTD(1)),
    `chain_seq` Nullable(UInt64) COMMENT 'audit.chain.seq',
    `chain_prev_hash` Nullable(String) COMMENT 'audit.chain.prev_hash' CODEC(ZSTD(1)),
    `chain_hash` Nullable(String) COMMENT 'audit.chain.hash' CODEC(ZSTD(1)),
    `service_name` LowCardinality(String) COMMENT 'resource service.name',
    `severity_text` LowCardinality(String) COMMENT 'INFO, or WARN for high/critical risk',
    `severity_number` UInt8,
    `trace_id` String COMMENT 'W3C trace id (hex) when the action ran in a trace' CODEC(ZSTD(1)),
    `span_id` String CODEC(ZSTD(1)),
    `attributes` Map(LowCardinality(String), String) COMMENT 'other LogRecord attributes, kept so nothing is lost' CODEC(ZSTD(1)),
    `inserted_at` DateTime64(3, 'UTC') DEFAULT now64(3) COMMENT 'when the store received it',
    `ver` UInt64 MATERIALIZED toUInt64(9223372036854775807 - toUnixTimestamp64Nano(now64(9)))
        COMMENT 'ReplacingMergeTree version: higher for earlier inserts, so the first copy of an event wins',
    `event_key` String MATERIALIZED multiIf(event_id != toUUID('00000000-0000-0000-0000-000000000000'), toString(event_id),
        mapContains(attributes, 'audit.event_id'), attributes['audit.event_id'],
        concat('content:', hex(cityHash64(tuple(event_type, timestamp, tenant_id, actor, payload, chain_id, chain_seq)))))
        COMMENT 'the dedup key: the event id (canonical UUID text, else as sent)',
    `key_day` UInt16 MATERIALIZED if(toUnixTimestamp64Milli(UUIDv7ToDateTime(toUUIDOrZero(event_key))) = 0, 65535,
        toUInt16(least(intDiv(toUnixTimestamp64Milli(UUIDv7ToDateTime(toUUIDOrZero(event_key))), 86400000), 65534)))
        COMMENT 'the day of the UUIDv7 time in event_key (days since 1970), 65535 for a key without one',
    INDEX idx_timestamp timestamp TYPE minmax GRANULARITY 1,
    INDEX idx_event_id event_id TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_event_type event_type TYPE set(256) GRANULARITY 1,
    INDEX idx_actor actor TYPE bloom_filter(0.01) GRANULARITY 1
) ENGINE = ${replicated}ReplacingMergeTree(ver)
ORDER BY (key_day, tenant_id, event_key)
TTL toDateTime(least(greatest(toUnixTimestamp64Second(timestamp), toUnixTimestamp64Second(inserted_at)) + 86400 * 365, 4294967295))
    DELETE WHERE greatest(toUnixTimestamp64Second(timestamp), toUnixTimestamp64Second(inserted_at)) + 86400 * 365 < 4294967295;

-- @single-only
-- Every row stored so far, with its version (a MATERIALIZED column, so the setting that lets an INSERT name it).
INSERT INTO ${db}.`audit_events_next${local}` (event_id, event_type, timestamp, tenant_id, actor, actor_type, source_ip,
    payload, reason, outcome, risk, impersonator_id, impersonation_id, approval_id, chain_id, chain_seq,
    chain_prev_hash, chain_hash, service_name, severity_text, severity_number, trace_id, span_id, attributes,
    inserted_at, ver)
SELECT event_id, event_type, timestamp, tenant_id, actor, actor_type, source_ip, payload, reason, outcome, risk,
    impersonator_id, impersonation_id, approval_id, chain_id, chain_seq, chain_prev_hash, chain_hash, service_name,
    severity_text, severity_number, trace_id, span_id, attributes, inserted_at, ver
FROM ${db}.`audit_events${local}`
SETTINGS insert_allow_materialized_columns = 1;

-- The swap. audit_events_mv and audit_events_unique name the table, so they follow it. The old table stays as
-- audit_events_v2 (nothing here drops audit rows; its own TTL ages it out, or an operator drops it).
RENAME TABLE ${db}.`audit_events${local}` TO ${db}.`audit_events_v2${local}`,
    ${db}.`audit_events_next${local}` TO ${db}.`audit_events${local}` ${on_cluster};

-- @single-only
-- Rows a writer stored into the old table between the copy and the swap (a collector running during the
-- migration): copied again; rows copied twice are the same version of the same key, which FINAL collapses.
INSERT INTO ${db}.`audit_events${local}` (event_id, event_type, timestamp, tenant_id, actor, actor_type, source_ip,
    payload, reason, outcome, risk, impersonator_id, impersonation_id, approval_id, chain_id, chain_seq,
    chain_prev_hash, chain_hash, service_name, severity_text, severity_number, trace_id, span_id, attributes,
    inserted_at, ver)
SELECT event_id, event_type, timestamp, tenant_id, actor, actor_type, source_ip, payload, reason, outcome, risk,
    impersonator_id, impersonation_id, approval_id, chain_id, chain_seq, chain_prev_hash, chain_hash, service_name,
    severity_text, severity_number, trace_id, span_id, attributes, inserted_at, ver
FROM ${db}.`audit_events_v2${local}`
WHERE inserted_at >= (SELECT max(inserted_at) FROM ${db}.`audit_events${local}`) - INTERVAL 1 MINUTE
SETTINGS insert_allow_materialized_columns = 1;

-- @cluster-only
-- Cluster: after the swap, every shard's old rows (one replica each) through the Distributed table, which shards
-- them by event id as before, so each row lands on the shard it came from. Run while the collectors are stopped.
INSERT INTO ${db}.`audit_events` (event_id, event_type, timestamp, tenant_id, actor, actor_type, source_ip,
    payload, reason, outcome, risk, impersonator_id, impersonation_id, approval_id, chain_id, chain_seq,
    chain_prev_hash, chain_hash, service_name, severity_text, severity_number, trace_id, span_id, attributes,
    inserted_at, ver)
SELECT event_id, event_type, timestamp, tenant_id, actor, actor_type, source_ip, payload, reason, outcome, risk,
    impersonator_id, impersonation_id, approval_id, chain_id, chain_seq, chain_prev_hash, chain_hash, service_name,
    severity_text, severity_number, trace_id, span_id, attributes, inserted_at, ver
FROM cluster(${cluster}, ${db}, `audit_events_v2_local`)
SETTINGS insert_allow_materialized_columns = 1, distributed_foreground_insert = 1;

-- source_ips_mv (0031) reads audit_events: after a RENAME of its source the engine feeds it from neither table
-- (chDB 26.9: it then fires on no insert, though its text still names audit_events), so it is made again on
-- the new table.
DROP VIEW IF EXISTS ${db}.`source_ips_mv${local}` ${on_cluster};

CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.`source_ips_mv${local}` ${on_cluster}
TO ${db}.`source_ips${local}`
AS SELECT tenant_id, assumeNotNull(source_ip) AS source_ip, min(timestamp) AS first_seen, max(timestamp) AS last_seen
FROM ${db}.`audit_events${local}`
WHERE source_ip IS NOT NULL
GROUP BY tenant_id, source_ip;

-- The addresses of rows stored since the swap (before the view above existed): min/max are idempotent, so
-- taking the last hour again changes nothing else.
INSERT INTO ${db}.`source_ips`
SELECT tenant_id, assumeNotNull(source_ip), min(timestamp), max(timestamp)
FROM ${db}.`audit_events`
WHERE source_ip IS NOT NULL AND inserted_at >= now64(3) - INTERVAL 1 HOUR
GROUP BY tenant_id, source_ip;
