-- approvals: requests for dual approval of sensitive actions (approvals/store.py, README "Approvals").
--
-- Append-only like api_tokens: every change of a request (a decision, an expiry, its use) inserts
-- the whole row again with a higher version; ReplacingMergeTree(version) keeps the newest, reads use FINAL.
-- `digest` is the action's binding digest (SHA-256 of event type, target, tenant, requester, bound values):
-- an approval is found, and only usable, by it.
CREATE TABLE IF NOT EXISTS ${db}.`approvals${local}` ${on_cluster} (
    `approval_id` String COMMENT 'UUIDv7',
    `tenant_id` String,
    `digest` String COMMENT 'hex SHA-256 binding the approval to one exact action',
    `event_type` String,
    `target` String,
    `requester` String,
    `impersonator` String DEFAULT '' COMMENT 'who impersonated the requester, when someone did: may not approve',
    `bound` String COMMENT 'JSON: the bound values as the approver sees them (secrets redacted)',
    `before` String COMMENT 'JSON: the state before, as the entry reads it',
    `reason` String DEFAULT '',
    `approvers` UInt8 COMMENT 'people needed besides the requester',
    `approved_by` String DEFAULT '[]' COMMENT 'JSON list of the approvers so far',
    `decided_by` String DEFAULT '',
    `decision_reason` String DEFAULT '',
    `state` LowCardinality(String) COMMENT 'pending | granted | denied | expired | used',
    `created_at` DateTime64(3, 'UTC'),
    `expires_at` DateTime64(3, 'UTC'),
    `decided_at` Nullable(DateTime64(3, 'UTC')),
    `used_at` Nullable(DateTime64(3, 'UTC')),
    `version` UInt64
) ENGINE = ${replicated}ReplacingMergeTree(version)
ORDER BY approval_id;

-- @cluster-only
CREATE TABLE IF NOT EXISTS ${db}.`approvals` ${on_cluster} AS ${db}.`approvals_local`
ENGINE = Distributed(${cluster}, ${db}, `approvals_local`, cityHash64(approval_id));

-- approval_claims: the single use of a granted approval, one row per approval id, inserted once.
-- Single node: the service inserts under its one lock after checking the id is absent (one process owns
-- an embedded store, and a server's one service replica serialises the same way).
-- @single-only
CREATE TABLE IF NOT EXISTS ${db}.`approval_claims` (
    `approval_id` String,
    `claimed_at` DateTime64(3, 'UTC'),
    `claimed_by` String COMMENT 'the requester whose retry used it'
) ENGINE = MergeTree
ORDER BY approval_id;

-- Several service replicas over a cluster: KeeperMap, a key-value table kept in ClickHouse Keeper (Raft,
-- linearizable writes), shared by every replica. Inserted with keeper_map_strict_mode = 1, an INSERT of a
-- key that exists fails: exactly one replica's claim of an approval id succeeds, whatever the race.
-- (A ReplicatedMergeTree insert cannot do that: two replicas may both insert before either sees the other.)
-- @cluster-only
CREATE TABLE IF NOT EXISTS ${db}.`approval_claims` ${on_cluster} (
    `approval_id` String,
    `claimed_at` DateTime64(3, 'UTC'),
    `claimed_by` String
) ENGINE = KeeperMap('/auditrail/${db}/approval_claims')
PRIMARY KEY approval_id;
