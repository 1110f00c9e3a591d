-- asset: ratings
-- severity: ERROR
-- blocking: true
-- description: The batch's LLM requests do not add up to answered + failed-with-reason: a stage row whose call is neither in llm_calls nor in failed_calls (lost), or failed requests above checks.max_failed_request_rate of the batch's distinct requests. A few failures are an outcome: their rows carry the error, the rest of the batch is paired and exported.
WITH stage_calls AS (
    SELECT DISTINCT 'completions' AS stage, call_id, error FROM {{ ref('completions') }}
    UNION
    SELECT DISTINCT 'evolved_completions', call_id, error FROM {{ ref('evolved_completions') }}
    UNION
    SELECT DISTINCT 'ratings', call_id, error FROM {{ ref('ratings') }}
),
accounted AS (
    SELECT s.stage, s.call_id, s.error,
           a.call_id IS NOT NULL AS answered, f.call_id IS NOT NULL AS failed
    FROM stage_calls AS s
    LEFT JOIN llm_calls AS a ON a.call_id = s.call_id AND s.error IS NULL
    LEFT JOIN failed_calls AS f ON f.call_id = s.call_id AND s.error IS NOT NULL
),
rate AS (
    SELECT avg(CASE WHEN error IS NOT NULL THEN 1.0 ELSE 0.0 END) AS failed_rate FROM accounted
)
SELECT stage, call_id, error, rate.failed_rate,
       CASE WHEN NOT answered AND NOT failed
                THEN stage || ' call ' || call_id || ': neither answered nor failed with a reason'
            ELSE 'failed requests are ' || printf('%.1f', 100 * rate.failed_rate)
                 || '% of the batch (above checks.max_failed_request_rate); first: ' || error
       END AS reason
FROM accounted, rate
WHERE (NOT answered AND NOT failed)
   OR (error IS NOT NULL AND rate.failed_rate > {{ var('max_failed_request_rate') }})
ORDER BY answered OR failed, stage, call_id
