-- Each event once, whatever else differs (issue 15): audit_events keyed by the event id, the first stored
-- version wins, and every other version is counted in audit_event_versions for `verify` to report.
--
-- Before: ReplacingMergeTree on (tenant_id, timestamp, event_id), monthly partitions. A copy of an event id with
-- another timestamp had another sort key (or partition) and was a second row for every read, FINAL included.
-- Now the sort key is (tenant_id, event_key), no partitions (every copy of an id meets the others in merges and
-- in FINAL), and `ver` still falls with time, so the first copy stored wins whatever the later ones carry.
-- event_key is the id as the dedup key: the UUID's canonical text (UUIDv7 text sorts by time, so a tenant's
-- rows stay in time order on disk and exports stream in that order), or for an id that is no UUID the id as
-- sent (kept in attributes, event_id being the zero UUID), or for a row inserted without any id a hash of its
-- content. Time filters keep their speed through a minmax index on timestamp.
-- Dedup is per tenant: a copy of an id under another tenant is that tenant's row, and its chain hash (which
-- covers the tenant) fails verification there; one tenant's writes can never hide another tenant's event.
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
    INDEX idx_timestamp timestamp TYPE minmax GRANULARITY 1,
    INDEX idx_event_id event_id TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_event_type event_type TYPE set(256) GRANULARITY 1,
    INDEX idx_actor actor TYPE bloom_filter(0.01) GRANULARITY 1
) ENGINE = ${replicated}ReplacingMergeTree(ver)
ORDER BY (tenant_id, event_key)
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
-- audit_events_v1 (nothing here drops audit rows; its own TTL ages it out, or an operator drops it).
RENAME TABLE ${db}.`audit_events${local}` TO ${db}.`audit_events_v1${local}`,
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
FROM ${db}.`audit_events_v1${local}`
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
FROM cluster(${cluster}, ${db}, `audit_events_v1_local`)
SETTINGS insert_allow_materialized_columns = 1, distributed_foreground_insert = 1;

-- audit_event_versions: one row per (tenant, event id, version), a version being the hash of the event's typed
-- content; identical copies (replays) are one version, counted in `copies`. Two versions of one key are a
-- conflict: audit_events shows the first stored, and `verify` (and the JSON export, for the offline verify)
-- report the others. Fed by a view on audit_events, so every way rows arrive (the MV, direct inserts) counts.
CREATE TABLE IF NOT EXISTS ${db}.`audit_event_versions${local}` ${on_cluster} (
    `tenant_id` String CODEC(ZSTD(1)),
    `event_key` String COMMENT 'audit_events.event_key' CODEC(ZSTD(1)),
    `version` UInt64 COMMENT 'cityHash64 of the typed content (every column but inserted_at)',
    `timestamp` SimpleAggregateFunction(any, DateTime64(9, 'UTC')) COMMENT 'this version''s event time (part of it)',
    `first_stored` SimpleAggregateFunction(min, DateTime64(3, 'UTC')) COMMENT 'when this version first arrived',
    `copies` SimpleAggregateFunction(sum, UInt64) COMMENT 'how many times it arrived'
) ENGINE = ${replicated}AggregatingMergeTree()
ORDER BY (tenant_id, event_key, version)
TTL toDateTime(least(greatest(toUnixTimestamp64Second(timestamp), toUnixTimestamp64Second(first_stored)) + 86400 * 365, 4294967295))
    DELETE WHERE greatest(toUnixTimestamp64Second(timestamp), toUnixTimestamp64Second(first_stored)) + 86400 * 365 < 4294967295;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.`audit_event_versions_mv${local}` ${on_cluster}
TO ${db}.`audit_event_versions${local}`
SQL SECURITY DEFINER
AS SELECT tenant_id, event_key,
    cityHash64(tuple(event_id, event_type, timestamp, tenant_id, actor, source_ip, payload, actor_type, reason, outcome,
        risk, impersonator_id, impersonation_id, approval_id, chain_id, chain_seq, chain_prev_hash, chain_hash,
        service_name, severity_text, severity_number, trace_id, span_id, attributes)) AS version,
    timestamp, inserted_at AS first_stored, toUInt64(1) AS copies
FROM ${db}.`audit_events${local}`;

-- @cluster-only
CREATE TABLE IF NOT EXISTS ${db}.`audit_event_versions` ${on_cluster} AS ${db}.`audit_event_versions_local`
ENGINE = Distributed(${cluster}, ${db}, `audit_event_versions_local`, cityHash64(event_key));

-- @single-only
-- The versions of the rows stored before this migration, from the old table (whose merges only ever
-- collapsed copies with one timestamp, so conflicts of another timestamp are all still there). event_key and
-- version as audit_events and audit_event_versions_mv compute them.
INSERT INTO ${db}.`audit_event_versions` (tenant_id, event_key, version, timestamp, first_stored, copies)
SELECT tenant_id,
    multiIf(event_id != toUUID('00000000-0000-0000-0000-000000000000'), toString(event_id),
        mapContains(attributes, 'audit.event_id'), attributes['audit.event_id'],
        concat('content:', hex(cityHash64(tuple(event_type, timestamp, tenant_id, actor, payload, chain_id, chain_seq))))),
    cityHash64(tuple(event_id, event_type, timestamp, tenant_id, actor, source_ip, payload, actor_type, reason, outcome,
        risk, impersonator_id, impersonation_id, approval_id, chain_id, chain_seq, chain_prev_hash, chain_hash,
        service_name, severity_text, severity_number, trace_id, span_id, attributes)),
    timestamp, inserted_at, 1
FROM ${db}.`audit_events_v1`;

-- @cluster-only
-- The same over every shard's old table, written through the Distributed table.
INSERT INTO ${db}.`audit_event_versions` (tenant_id, event_key, version, timestamp, first_stored, copies)
SELECT tenant_id,
    multiIf(event_id != toUUID('00000000-0000-0000-0000-000000000000'), toString(event_id),
        mapContains(attributes, 'audit.event_id'), attributes['audit.event_id'],
        concat('content:', hex(cityHash64(tuple(event_type, timestamp, tenant_id, actor, payload, chain_id, chain_seq))))),
    cityHash64(tuple(event_id, event_type, timestamp, tenant_id, actor, source_ip, payload, actor_type, reason, outcome,
        risk, impersonator_id, impersonation_id, approval_id, chain_id, chain_seq, chain_prev_hash, chain_hash,
        service_name, severity_text, severity_number, trace_id, span_id, attributes)),
    timestamp, inserted_at, 1
FROM cluster(${cluster}, ${db}, `audit_events_v1_local`)
SETTINGS distributed_foreground_insert = 1;
