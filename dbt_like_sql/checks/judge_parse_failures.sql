-- asset: ratings
-- severity: ERROR
-- blocking: true
-- description: Ratings the judge gave in an unparseable form, when their share of the answered ratings exceeds checks.max_parse_failure_rate (requests that failed outright are llm_request_reconciliation's).
WITH answered AS (
    SELECT * FROM {{ ref('ratings') }} WHERE parse_status <> 'request_failed'
),
rate AS (
    SELECT avg(CASE WHEN parse_status <> 'ok' THEN 1.0 ELSE 0.0 END) AS failure_rate
    FROM answered
)
SELECT r.completion_id, r.judge, r.parse_status, r.raw_output, rate.failure_rate
FROM answered AS r, rate
WHERE r.parse_status <> 'ok' AND rate.failure_rate > {{ var('max_parse_failure_rate') }}
