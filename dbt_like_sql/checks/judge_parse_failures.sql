-- asset: ratings
-- severity: ERROR
-- blocking: true
-- description: Ratings the judge gave in an unparseable form, when their share of the answered ratings exceeds checks.max_parse_failure_rate (requests that failed outright are llm_request_reconciliation's).
WITH answered AS (
    SELECT * FROM {{ ref('ratings') }} WHERE parse_status <> 'request_failed'
),
rate AS (
    SELECT count(*) AS answered,
           count(*) FILTER (WHERE parse_status <> 'ok') AS failures,
           avg(CASE WHEN parse_status <> 'ok' THEN 1.0 ELSE 0.0 END) AS failure_rate
    FROM answered
)
SELECT r.completion_id, r.judge, r.parse_status, r.raw_output, rate.failure_rate,
       rate.failures || ' of ' || rate.answered || ' answered ratings could not be parsed ('
           || printf('%.1f', 100 * rate.failure_rate) || '%, above checks.max_parse_failure_rate '
           || {{ var('max_parse_failure_rate') }} || '); first: judge '
           || regexp_replace(r.judge, '^.*/', '') || ', completion ' || r.completion_id || ': '
           || r.parse_status AS reason
FROM answered AS r, rate
WHERE r.parse_status <> 'ok' AND rate.failure_rate > {{ var('max_parse_failure_rate') }}
ORDER BY r.judge, r.completion_id, r.aspect
