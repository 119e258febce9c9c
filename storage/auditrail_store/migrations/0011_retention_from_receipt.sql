-- Retention counts from the later of the event's time and the time the store received it (issue 15).
--
-- Before: TTL toDateTime(timestamp) + N days. An event whose time was older than its contract (a late
-- delivery, a replay, a clock at 0) was accepted and deleted by the next merge, seconds later; a time after
-- 2106-02-07 overflowed toDateTime (UInt32 seconds) to a date in the past, with the same result.
-- Now: expiry = greatest(event time, receipt) + N days, computed in Int64 seconds (no overflow), and a row
-- whose expiry is past what a TTL can name (2106-02-07, DateTime's end) never expires by TTL. retention.py
-- renders the same expression with the per-tenant contracts (migrate re-applies them after this file).
--
-- otel_logs gets the receipt time as one column of ours (the exporter's own columns stay byte-equal to
-- upstream: it inserts with an explicit column list, so the default fills it for the collector's rows too).
-- MATERIALIZED: no writer can claim an earlier receipt (an INSERT cannot name it; only
-- insert_allow_materialized_columns = 1, which tests use to age rows). Rows stored before this migration have
-- no value on disk: the expression is evaluated when they are read or merged, so they count from then (kept
-- longer, never shorter).
ALTER TABLE ${db}.`otel_logs${local}` ${on_cluster}
    ADD COLUMN IF NOT EXISTS `__auditrail_received_at` DateTime64(3, 'UTC') MATERIALIZED now64(3)
    COMMENT 'auditrail: when the store received the row (retention counts from it)' CODEC(Delta(8), ZSTD(1));

-- audit_events.inserted_at is now the otel_logs row's receipt time, so both copies of an event expire together.
ALTER TABLE ${db}.`audit_events_mv${local}` ${on_cluster} MODIFY QUERY SELECT
    toUUIDOrZero(LogAttributes['audit.event_id']) AS event_id,
    if(EventName != '', EventName, LogAttributes['event.name']) AS event_type,
    toDateTime64(Timestamp, 9, 'UTC') AS timestamp,
    LogAttributes['audit.tenant_id'] AS tenant_id,
    if(mapContains(LogAttributes, 'enduser.id'), LogAttributes['enduser.id'], NULL) AS actor,
    if(mapContains(LogAttributes, 'audit.actor.type'), LogAttributes['audit.actor.type'], NULL) AS actor_type,
    if(mapContains(LogAttributes, 'client.address'), LogAttributes['client.address'], NULL) AS source_ip,
    if(mapContains(LogAttributes, 'audit.payload'), LogAttributes['audit.payload'], NULL) AS payload,
    if(mapContains(LogAttributes, 'audit.reason'), LogAttributes['audit.reason'], NULL) AS reason,
    if(mapContains(LogAttributes, 'audit.outcome'), LogAttributes['audit.outcome'], NULL) AS outcome,
    if(mapContains(LogAttributes, 'audit.risk'), LogAttributes['audit.risk'], NULL) AS risk,
    if(mapContains(LogAttributes, 'audit.impersonator.id'), LogAttributes['audit.impersonator.id'], NULL) AS impersonator_id,
    if(mapContains(LogAttributes, 'audit.impersonation.id'), LogAttributes['audit.impersonation.id'], NULL) AS impersonation_id,
    if(mapContains(LogAttributes, 'audit.approval.id'), LogAttributes['audit.approval.id'], NULL) AS approval_id,
    if(mapContains(LogAttributes, 'audit.chain.id'), LogAttributes['audit.chain.id'], NULL) AS chain_id,
    toUInt64OrNull(LogAttributes['audit.chain.seq']) AS chain_seq,
    if(mapContains(LogAttributes, 'audit.chain.prev_hash'), LogAttributes['audit.chain.prev_hash'], NULL) AS chain_prev_hash,
    if(mapContains(LogAttributes, 'audit.chain.hash'), LogAttributes['audit.chain.hash'], NULL) AS chain_hash,
    ServiceName AS service_name,
    SeverityText AS severity_text,
    SeverityNumber AS severity_number,
    TraceId AS trace_id,
    SpanId AS span_id,
    mapFilter((k, v) -> (k = 'audit.event_id' AND isNull(toUUIDOrNull(v))) OR k NOT IN ('audit.event_id', 'audit.tenant_id', 'enduser.id', 'audit.actor.type',
        'client.address', 'audit.payload', 'audit.reason', 'audit.outcome', 'audit.risk', 'audit.impersonator.id',
        'audit.impersonation.id', 'audit.approval.id', 'audit.chain.id', 'audit.chain.seq',
        'audit.chain.prev_hash', 'audit.chain.hash'), LogAttributes) AS attributes,
    `__auditrail_received_at` AS inserted_at
FROM ${db}.`otel_logs${local}`
WHERE mapContains(LogAttributes, 'audit.event_id')
  AND (ScopeName = 'auditrail' OR EventName != '' OR LogAttributes['event.name'] != '');

-- The default contract (365 days, no hold) in the new form; retention.ttl_clause renders the per-tenant one.
ALTER TABLE ${db}.`audit_events${local}` ${on_cluster} MODIFY TTL
    toDateTime(least(greatest(toUnixTimestamp64Second(timestamp), toUnixTimestamp64Second(inserted_at)) + 86400 * 365, 4294967295))
    DELETE WHERE greatest(toUnixTimestamp64Second(timestamp), toUnixTimestamp64Second(inserted_at)) + 86400 * 365 < 4294967295;

ALTER TABLE ${db}.`otel_logs${local}` ${on_cluster} MODIFY TTL
    toDateTime(least(greatest(toUnixTimestamp64Second(Timestamp), toUnixTimestamp64Second(`__auditrail_received_at`)) + 86400 * 365, 4294967295))
    DELETE WHERE greatest(toUnixTimestamp64Second(Timestamp), toUnixTimestamp64Second(`__auditrail_received_at`)) + 86400 * 365 < 4294967295;
