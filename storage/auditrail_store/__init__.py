"""auditrail's store: ClickHouse schema and migrations, the store service, exports, retention.

The engine is chDB (ClickHouse in-process) by default and a ClickHouse server or cluster when outgrown;
clickhouse-connect drives both, selected by `AUDITRAIL_CLICKHOUSE_URL`.
"""
