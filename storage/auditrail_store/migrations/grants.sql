-- Roles and row policies for a ClickHouse server (`auditrail migrate --grants`); chDB has no access control.
-- Give users these roles; never give the writer or reader ALTER, DELETE or TRUNCATE: audit rows are
-- append-only, and only TTL (retention contracts) removes them.
CREATE ROLE IF NOT EXISTS auditrail_writer ${on_cluster};
CREATE ROLE IF NOT EXISTS auditrail_reader ${on_cluster};
CREATE ROLE IF NOT EXISTS auditrail_admin ${on_cluster};

-- The collector's clickhouse exporter (create_schema: false): DESC TABLE, then INSERT. audit_events_mv runs
-- with its definer's rights (SQL SECURITY DEFINER), so the writer needs nothing on audit_events.
GRANT ${on_cluster} SHOW COLUMNS, INSERT ON ${db}.`otel_logs` TO auditrail_writer;
GRANT ${on_cluster} SHOW COLUMNS, INSERT ON ${db}.`otel_logs${local}` TO auditrail_writer;

-- Inserts into audit_events (a ReplacingMergeTree, via the MV) are ~2x faster without optimize_on_insert,
-- which only pre-collapses duplicates inside one block; reads use FINAL anyway.
CREATE SETTINGS PROFILE IF NOT EXISTS auditrail_writer_settings ${on_cluster} SETTINGS optimize_on_insert = 0
    TO auditrail_writer;

-- Readers (Grafana's readonly=1 account among them) read audit_events_unique with FINAL's merge skipped in a
-- partition that is one merged part (0035): a view's own SETTINGS are ignored under readonly=1.
CREATE SETTINGS PROFILE IF NOT EXISTS auditrail_reader_settings ${on_cluster}
    SETTINGS do_not_merge_across_partitions_select_final = 1 TO auditrail_reader;

-- Readers (the store service's export/verify, Grafana): SELECT on the typed table only.
GRANT ${on_cluster} SELECT ON ${db}.`audit_events` TO auditrail_reader;
GRANT ${on_cluster} SELECT ON ${db}.`audit_events${local}` TO auditrail_reader;
-- Grafana's dashboards (grafana/queries.py) also read the chain_state view (over audit_events, so the
-- policy below applies through it) and source_ips (its own policy below).
GRANT ${on_cluster} SELECT ON ${db}.`chain_state` TO auditrail_reader;
GRANT ${on_cluster} SELECT ON ${db}.`source_ips` TO auditrail_reader;
GRANT ${on_cluster} SELECT ON ${db}.`source_ips${local}` TO auditrail_reader;
-- verify's conflicts (0034): counted from the copies otel_logs keeps, under the row policy below (the tenant
-- attribute), so a reader sees the raw rows of its own tenant only.
GRANT ${on_cluster} SELECT ON ${db}.`otel_logs` TO auditrail_reader;
GRANT ${on_cluster} SELECT ON ${db}.`otel_logs${local}` TO auditrail_reader;

-- Operators: retention contracts (an INSERT plus ALTER ... MODIFY TTL) and everything a reader may do.
GRANT ${on_cluster} auditrail_reader TO auditrail_admin;
GRANT ${on_cluster} SELECT, INSERT ON ${db}.`retention_contracts` TO auditrail_admin;
GRANT ${on_cluster} SELECT, INSERT ON ${db}.`retention_contracts${local}` TO auditrail_admin;
GRANT ${on_cluster} ALTER TTL, ALTER MODIFY SETTING, OPTIMIZE ON ${db}.`audit_events${local}` TO auditrail_admin;
GRANT ${on_cluster} ALTER TTL, ALTER MODIFY SETTING, OPTIMIZE ON ${db}.`otel_logs${local}` TO auditrail_admin;

-- Defense in depth for tenant isolation: a reader sees only the tenant its session names in the custom
-- setting SQL_auditrail_tenant (the store service sets it per query from the token's tenant; the server's
-- custom_settings_prefixes must allow SQL_, its default). Unset, the query fails: fail closed.
CREATE ROW POLICY IF NOT EXISTS auditrail_tenant_scope ON ${db}.`audit_events${local}` ${on_cluster}
    FOR SELECT USING tenant_id = getSetting('SQL_auditrail_tenant') TO auditrail_reader;
CREATE ROW POLICY IF NOT EXISTS auditrail_tenant_scope ON ${db}.`source_ips${local}` ${on_cluster}
    FOR SELECT USING tenant_id = getSetting('SQL_auditrail_tenant') TO auditrail_reader;
CREATE ROW POLICY IF NOT EXISTS auditrail_tenant_scope ON ${db}.`otel_logs${local}` ${on_cluster}
    FOR SELECT USING LogAttributes['audit.tenant_id'] = getSetting('SQL_auditrail_tenant') TO auditrail_reader;
