-- audit_events_unique, the same rows, without FINAL's merge where nothing is left to merge: audit_events has no
-- PARTITION BY (0012: every copy of an event id meets the others in merges and in FINAL), so the whole table is
-- one partition and do_not_merge_across_partitions_select_final changes no answer; it lets FINAL read a
-- partition that is one merged part (level > 0: its copies already collapsed) as it is, instead of merging
-- it again on every read. benchmarks/grafana.py, 10M events merged: the overview's 24 h panels read 3-5x less
-- CPU. With parts not merged yet, FINAL merges as before. A PARTITION BY added to audit_events later must
-- drop this setting (copies of an id could then sit in two partitions). Still a plain (SQL SECURITY INVOKER)
-- view: the reader's grants, row policy and additional_table_filters on audit_events apply. Under readonly=1
-- the engine ignores a view's own SETTINGS (chDB 26.9): readonly readers get the setting from their session
-- (the Grafana interface sets it; on a server, grants.sql's auditrail_reader_settings profile).
CREATE OR REPLACE VIEW ${db}.`audit_events_unique` ${on_cluster} AS
SELECT * FROM ${db}.`audit_events` FINAL
SETTINGS do_not_merge_across_partitions_select_final = 1;
