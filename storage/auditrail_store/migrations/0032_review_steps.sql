-- review_steps: the monthly close's log (reviews/schedule.py, README "Monthly review"): one row per step of a
-- month's close (report, archive, review.due, review.overdue) per tenant, each time it ran. Append-only; a
-- step is done once it has a row with status 'done', so a restarted service resumes where it stopped and
-- never repeats a done step (the close is idempotent).
CREATE TABLE IF NOT EXISTS ${db}.`review_steps${local}` ${on_cluster} (
    `month` String COMMENT 'YYYY-MM closed',
    `tenant_id` String COMMENT '* for the global document',
    `step` LowCardinality(String) COMMENT 'report | archive | due | overdue',
    `status` LowCardinality(String) COMMENT 'done | failed | skipped',
    `detail` String DEFAULT '' COMMENT 'the file written, the object archived, or the error',
    `at` DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ${replicated}MergeTree()
ORDER BY (month, tenant_id, step, at);

-- @cluster-only
CREATE TABLE IF NOT EXISTS ${db}.`review_steps` ${on_cluster} AS ${db}.`review_steps_local`
ENGINE = Distributed(${cluster}, ${db}, `review_steps_local`, cityHash64(month));
