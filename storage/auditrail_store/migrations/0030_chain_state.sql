-- chain_state: each hash chain of each tenant as the stored events show it, for Grafana's integrity
-- dashboard (grafana/queries.py) and analysts. Per (tenant, chain): how many events, the seq range, seqs
-- missing inside it, links whose prev_hash is not the hash of the event before (the link check of
-- `auditrail verify`; recomputing each event's own hash needs the canonical encoding, which stays in
-- `auditrail verify --tenant`), the last seq a signed checkpoint (audit.checkpoint, payload.seq) covers and
-- the unanchored tail after it. Reads the deduplicated events, so a retried copy is never a gap or a fork.
-- A plain (SQL SECURITY INVOKER) view: the reader's grants and row policy on audit_events still apply.
CREATE VIEW IF NOT EXISTS ${db}.`chain_state` ${on_cluster} AS
SELECT
    tenant_id,
    chain_id,
    count() AS events,
    min(chain_seq) AS first_seq,
    max(chain_seq) AS last_seq,
    toUInt64(max(chain_seq) - min(chain_seq) + 1 - uniqExact(chain_seq)) AS missing_seqs,
    countIf(chain_seq > 1 AND (prev_seq + 1 != chain_seq OR prev_hash_seen != chain_prev_hash)
            AND prev_seq != 0) AS broken_links,
    maxIf(chain_seq, event_type = 'audit.checkpoint') AS anchored_seq,
    toUInt64(max(chain_seq) - anchored_seq) AS unanchored_events,
    maxIf(timestamp, event_type = 'audit.checkpoint') AS last_checkpoint_at,
    max(timestamp) AS last_event_at,
    multiIf(missing_seqs > 0 OR broken_links > 0, 'broken', unanchored_events > 0, 'unanchored tail', 'ok') AS state
FROM (
    SELECT tenant_id, chain_id, assumeNotNull(chain_seq) AS chain_seq, chain_prev_hash, event_type, timestamp,
           lagInFrame(assumeNotNull(chain_seq), 1, 0) OVER w AS prev_seq,
           lagInFrame(chain_hash, 1, NULL) OVER w AS prev_hash_seen
    FROM ${db}.`audit_events_unique`
    WHERE chain_id IS NOT NULL AND chain_seq IS NOT NULL
    WINDOW w AS (PARTITION BY tenant_id, chain_id ORDER BY chain_seq ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)
)
GROUP BY tenant_id, chain_id;
