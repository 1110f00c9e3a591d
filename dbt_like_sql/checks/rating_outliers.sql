-- asset: ratings
-- severity: WARN
-- blocking: false
-- description: Suspicious ratings: kind 'high_rated_defect' = a near-empty (< checks.short_completion_chars) or truncated (finish_reason 'length') completion with mean rating >= checks.high_rating; kind 'judge_outlier' = a judge whose mean rating of a completion is >= checks.judge_outlier_gap from the other judges' mean (2+ judges; with exactly 2, both are listed).
WITH usable AS (
    SELECT completion_id, judge, rating FROM {{ ref('ratings') }}
    WHERE rating IS NOT NULL AND purpose = 'label'
),
per_completion AS (
    SELECT completion_id, avg(rating) AS mean_rating FROM usable GROUP BY completion_id
),
per_judge AS (
    -- one judge's mean over aspects and orders
    SELECT completion_id, judge, avg(rating) AS judge_mean FROM usable GROUP BY completion_id, judge
),
panel AS (
    SELECT completion_id, judge, judge_mean,
           count(*) OVER w AS judges,
           (sum(judge_mean) OVER w - judge_mean) / nullif(count(*) OVER w - 1, 0) AS others_mean
    FROM per_judge
    WINDOW w AS (PARTITION BY completion_id)
)
SELECT 'high_rated_defect' AS kind, t.completion_id, NULL::VARCHAR AS judge,
       length(coalesce(t.text, '')) AS chars, t.finish_reason,
       s.mean_rating AS rating, NULL::DOUBLE AS others_mean
FROM {{ ref('candidates') }} AS t
JOIN per_completion AS s USING (completion_id)
WHERE (length(coalesce(t.text, '')) < {{ var('short_completion_chars') }}
       OR t.finish_reason = 'length')
  AND s.mean_rating >= {{ var('high_rating') }}
UNION ALL
SELECT 'judge_outlier' AS kind, completion_id, judge,
       NULL::BIGINT AS chars, NULL::VARCHAR AS finish_reason,
       judge_mean AS rating, others_mean
FROM panel
WHERE judges >= 2 AND abs(judge_mean - others_mean) >= {{ var('judge_outlier_gap') }}
