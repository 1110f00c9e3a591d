-- For each instruction: chosen = its best-rated completion, rejected = its worst-rated one.
-- A completion's score is the mean of its non-NULL ratings; completions with no valid rating
-- are left out. Ties are never paired; equal scores are broken by completion_id so the
-- result is the same on every run.
WITH candidates AS (
    SELECT completion_id, instruction_id, model, 'pooled' AS origin
    FROM {{ ref('completions') }}
    UNION ALL
    SELECT completion_id, instruction_id, model, 'evolved' AS origin
    FROM {{ ref('evolved_completions') }}
),
scored AS (
    SELECT c.completion_id, c.instruction_id, c.model, c.origin, avg(r.rating) AS score
    FROM candidates AS c
    JOIN {{ ref('ratings') }} AS r USING (completion_id, instruction_id)
    WHERE r.rating IS NOT NULL
    GROUP BY ALL
),
ranked AS (
    SELECT
        *,
        row_number() OVER (PARTITION BY instruction_id ORDER BY score DESC, completion_id) AS best_rank,
        row_number() OVER (PARTITION BY instruction_id ORDER BY score ASC, completion_id) AS worst_rank
    FROM scored
)
SELECT
    substr(sha256(concat_ws(':', best.completion_id, worst.completion_id, {{ var('strategy') }})), 1, 20) AS pair_id,
    best.instruction_id,
    best.completion_id AS chosen_completion_id,
    worst.completion_id AS rejected_completion_id,
    best.model AS chosen_model,
    worst.model AS rejected_model,
    best.origin AS chosen_origin,
    worst.origin AS rejected_origin,
    best.score AS chosen_rating,
    worst.score AS rejected_rating,
    best.score - worst.score AS margin,
    {{ var('strategy') }} AS strategy
FROM ranked AS best
JOIN ranked AS worst
    ON best.instruction_id = worst.instruction_id AND best.best_rank = 1 AND worst.worst_rank = 1
WHERE best.score > worst.score
