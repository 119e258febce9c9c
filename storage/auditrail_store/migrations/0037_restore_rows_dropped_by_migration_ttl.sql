-- Rows 0012 and 0036 dropped from audit_events, put back from the tables they kept (audit_events_v1, _v2).
--
-- Both created the new audit_events with the default contract's TTL (365 days from the later of the event's
-- time and its receipt) and copied every row into it; the engine applies a table's TTL to the rows an INSERT
-- writes at once (a TTL merge right after it), so every row received more than 365 days before the upgrade of
-- a tenant with a longer contract or under legal hold was deleted there, before `migrate` rendered the
-- contracts into the new table. The old tables kept them (their TTL was the contracts'). The runner now renders
-- the contracts into a migration's TTL before any row is copied (retention.with_contracts), so this finds
-- nothing missing on a store upgraded since; what it copies again is the same version of the same key, which
-- FINAL collapses (as 0036's second copy). Rows are copied with their version (`ver`) and receipt, so the first
-- stored copy still wins and each keeps its retention counted from when the store received it. Only the
-- tenants whose contract is longer than the default or held, and only their rows past the default's 365 days:
-- no other row can have been dropped.

-- @single-only
INSERT INTO ${db}.`audit_events${local}` (event_id, event_type, timestamp, tenant_id, actor, actor_type, source_ip,
    payload, reason, outcome, risk, impersonator_id, impersonation_id, approval_id, chain_id, chain_seq,
    chain_prev_hash, chain_hash, service_name, severity_text, severity_number, trace_id, span_id, attributes,
    inserted_at, ver)
SELECT *
FROM (SELECT event_id, event_type, timestamp, tenant_id, actor, actor_type, source_ip,
    payload, reason, outcome, risk, impersonator_id, impersonation_id, approval_id, chain_id, chain_seq,
    chain_prev_hash, chain_hash, service_name, severity_text, severity_number, trace_id, span_id, attributes,
    inserted_at, ver FROM ${db}.`audit_events_v1${local}`
      UNION ALL SELECT event_id, event_type, timestamp, tenant_id, actor, actor_type, source_ip,
    payload, reason, outcome, risk, impersonator_id, impersonation_id, approval_id, chain_id, chain_seq,
    chain_prev_hash, chain_hash, service_name, severity_text, severity_number, trace_id, span_id, attributes,
    inserted_at, ver FROM ${db}.`audit_events_v2${local}`)
WHERE greatest(toUnixTimestamp64Second(timestamp), toUnixTimestamp64Second(inserted_at)) + 86400 * 365 < toUnixTimestamp(now())
  AND tenant_id IN (SELECT tenant_id FROM ${db}.`retention_contracts` GROUP BY tenant_id
                    HAVING argMax(days, changed_at) > 365 OR argMax(hold, changed_at))
SETTINGS insert_allow_materialized_columns = 1;

-- @cluster-only
-- Cluster: every shard's kept rows (one replica each) through the Distributed table, sharded by event id as
-- before, so each row lands on the shard it came from.
INSERT INTO ${db}.`audit_events` (event_id, event_type, timestamp, tenant_id, actor, actor_type, source_ip,
    payload, reason, outcome, risk, impersonator_id, impersonation_id, approval_id, chain_id, chain_seq,
    chain_prev_hash, chain_hash, service_name, severity_text, severity_number, trace_id, span_id, attributes,
    inserted_at, ver)
SELECT *
FROM (SELECT event_id, event_type, timestamp, tenant_id, actor, actor_type, source_ip,
    payload, reason, outcome, risk, impersonator_id, impersonation_id, approval_id, chain_id, chain_seq,
    chain_prev_hash, chain_hash, service_name, severity_text, severity_number, trace_id, span_id, attributes,
    inserted_at, ver FROM cluster(${cluster}, ${db}, `audit_events_v1_local`)
      UNION ALL SELECT event_id, event_type, timestamp, tenant_id, actor, actor_type, source_ip,
    payload, reason, outcome, risk, impersonator_id, impersonation_id, approval_id, chain_id, chain_seq,
    chain_prev_hash, chain_hash, service_name, severity_text, severity_number, trace_id, span_id, attributes,
    inserted_at, ver FROM cluster(${cluster}, ${db}, `audit_events_v2_local`))
WHERE greatest(toUnixTimestamp64Second(timestamp), toUnixTimestamp64Second(inserted_at)) + 86400 * 365 < toUnixTimestamp(now())
  AND tenant_id IN (SELECT tenant_id FROM ${db}.`retention_contracts` GROUP BY tenant_id
                    HAVING argMax(days, changed_at) > 365 OR argMax(hold, changed_at))
SETTINGS insert_allow_materialized_columns = 1, distributed_foreground_insert = 1;
