-- Run before every migration (idempotent, never recorded): the database and the ledger of migrations.
CREATE DATABASE IF NOT EXISTS ${db} ${on_cluster};

-- One row per applied migration file: checksum = SHA-256 of the file as shipped, so an edited file that
-- was already applied is caught instead of silently diverging from what the database holds.
CREATE TABLE IF NOT EXISTS ${db}.`schema_migrations` ${on_cluster} (
    `version` UInt32,
    `name` String,
    `checksum` String,
    `applied_at` DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ${replicated}MergeTree()
ORDER BY version;
