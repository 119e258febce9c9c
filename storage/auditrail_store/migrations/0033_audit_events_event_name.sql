-- audit_events.attributes no longer keeps `event.name` when it only repeats the event type.
--
-- Our collector copies EventName into LogAttributes['event.name'] for the clickhouse exporter (pipelines.yaml,
-- transform/event_name; 0003 says why), so an event stored through that pipeline carried {'event.name': type}
-- in `attributes` and one written by `auditrail serve` (its ingest path, its own events) did not. The same
-- event arriving both ways (the service's own events, which `serve --forward-otlp` also sends to the
-- collector for its alert rules) was then two versions of one event id (0012), a conflict `verify` reports.
-- The type is in event_type; the attribute is dropped when it equals EventName or stands in for a missing
-- one, and kept (nothing lost) when it says something else. Rows stored before keep theirs: a replay of one of
-- them arriving after this migration differs from it by that attribute alone.
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
        'audit.chain.prev_hash', 'audit.chain.hash')
        AND NOT (k = 'event.name' AND (EventName = '' OR v = EventName)), LogAttributes) AS attributes,
    `__auditrail_received_at` AS inserted_at
FROM ${db}.`otel_logs${local}`
WHERE mapContains(LogAttributes, 'audit.event_id')
  AND (ScopeName = 'auditrail' OR EventName != '' OR LogAttributes['event.name'] != '');
