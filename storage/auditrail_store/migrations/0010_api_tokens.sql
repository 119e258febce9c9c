-- api_tokens: bearer tokens of the store service (tokens.py). Only SHA-256 hashes of the secrets are stored.
--
-- A token is `art_<token_id>_<secret>`: token_id (16 hex digits) is public and is the lookup key; the secret
-- (256 random bits, base64url) is never stored, only secret_hash = hex(SHA-256(secret)), compared in constant
-- time. A fast hash is right for 256-bit random secrets (nothing to brute-force); a slow KDF is for passwords.
-- Append-only like the rest: revoking inserts the token's row again with revoked_at set and a higher
-- version; ReplacingMergeTree(version) keeps the newest and reads use FINAL, so a revocation is never undone
-- by a merge. The history of who created or revoked what stays in the rows' created_by / revoked_by.
CREATE TABLE IF NOT EXISTS ${db}.`api_tokens${local}` ${on_cluster} (
    `token_id` String COMMENT 'public part of the token, the lookup key',
    `secret_hash` String COMMENT 'hex SHA-256 of the secret part',
    `tenant_id` String COMMENT 'the tenant the token may act for; * for every tenant',
    `scope` LowCardinality(String) COMMENT 'read | ingest | admin',
    `description` String DEFAULT '',
    `created_at` DateTime64(3, 'UTC') DEFAULT now64(3),
    `created_by` String DEFAULT '' COMMENT 'OS user or admin token id that created it',
    `revoked_at` Nullable(DateTime64(3, 'UTC')),
    `revoked_by` String DEFAULT '',
    `version` UInt64 COMMENT 'row version: 1 at creation, 2 when revoked'
) ENGINE = ${replicated}ReplacingMergeTree(version)
ORDER BY token_id;

-- @cluster-only
CREATE TABLE IF NOT EXISTS ${db}.`api_tokens` ${on_cluster} AS ${db}.`api_tokens_local`
ENGINE = Distributed(${cluster}, ${db}, `api_tokens_local`, cityHash64(token_id));
