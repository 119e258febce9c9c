-- audit_events_mv: every audit record that lands in otel_logs becomes one typed audit_events row.
--
-- An audit record carries audit.event_id and is either of our instrumentation scope ("auditrail") or an
-- OTel event (EventName set) from another emitter that follows DESIGN.md's mapping. App logs in the same
-- table (no audit.event_id) are not copied. Absent attributes become NULL, never '' (see 0002). An event id
-- that is not a UUID (a foreign emitter's) is stored as the zero UUID and kept verbatim in `attributes`.
-- The event type is EventName, else the `event.name` attribute: the collector's clickhouse exporter (v0.161.0)
-- probes for the EventName column once, at start, and if ClickHouse was down then it inserts without it for
-- its whole life; our collector pipeline copies EventName into LogAttributes['event.name'] for that case.
-- SQL SECURITY DEFINER: the view inserts with the privileges of whoever ran the migration, so the
-- collector's writer role needs INSERT on otel_logs only (grants.sql).
CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.`audit_events_mv${local}` ${on_cluster}
TO ${db}.`audit_events${local}`
SQL SECURITY DEFINER
AS SELECT
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
        'audit.chain.prev_hash', 'audit.chain.hash'), LogAttributes) AS attributes
FROM ${db}.`otel_logs${local}`
WHERE mapContains(LogAttributes, 'audit.event_id')
  AND (ScopeName = 'auditrail' OR EventName != '' OR LogAttributes['event.name'] != '');
