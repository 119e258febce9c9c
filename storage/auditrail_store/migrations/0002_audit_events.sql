-- audit_events: one typed column per field of DESIGN.md's LogRecord mapping, filled by audit_events_mv.
--
-- Optional fields are Nullable: the hash chain distinguishes an absent attribute from an empty string, so
-- the store must too (instrumentation/auditrail/chain.py). payload stays the JSON text as emitted (String):
-- the chain hashes that exact text, and String inserts measured 2.2x faster than the JSON type (issue 4).
--
-- Dedup: ReplacingMergeTree on (tenant_id, timestamp, event_id). A replayed event carries the same id, time
-- and tenant, so its copies share the sort key; merges keep one, and reads use FINAL (db.select_events) so
-- copies not merged yet are never seen. docs/storage.md has the measured cost. The FIRST copy stored wins
-- (`ver` falls as time goes on): a replay is identical anyway, and a later copy with other content (an
-- ingest token re-sending a known event id) can never replace what was stored; otel_logs keeps both.
-- Retention: the TTL below is the default contract; retention.py replaces it with the per-tenant one.
CREATE TABLE IF NOT EXISTS ${db}.`audit_events${local}` ${on_cluster} (
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
    INDEX idx_event_id event_id TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_event_type event_type TYPE set(256) GRANULARITY 1,
    INDEX idx_actor actor TYPE bloom_filter(0.01) GRANULARITY 1
) ENGINE = ${replicated}ReplacingMergeTree(ver)
PARTITION BY toYYYYMM(timestamp)
ORDER BY (tenant_id, timestamp, event_id)
TTL toDateTime(timestamp) + toIntervalDay(365);

-- @cluster-only
-- Cluster: reads go through the Distributed table. Rows arrive by the MV on the shard their otel_logs row
-- went to (sharded by event id); the key here only matters for direct writes, and keeps the same rule.
CREATE TABLE IF NOT EXISTS ${db}.`audit_events` ${on_cluster} AS ${db}.`audit_events_local`
ENGINE = Distributed(${cluster}, ${db}, `audit_events_local`, cityHash64(toString(event_id)));
