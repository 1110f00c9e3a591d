-- Chosen/rejected pairs by the configured strategy (pairing.strategy). The judge decides:
--   best_vs_worst        the best- against the worst-rated completion of each instruction
--   best_vs_random_lower the best against one lower-rated completion drawn with pairing.seed
--   all_pairs            every pair of completions whose scores differ
--   evolved_vs_original  each EvolQuality rewrite against its pooled original, only where the
--                        judge rated the rewrite higher ("evolved is better" is checked)
-- A rule decides (no judge needed; a judge's scores, where present, are kept for comparison):
--   rule_evolved_over_original  each rewrite against its pooled original
--   rule_stronger_model  per instruction, an answer of the highest model in
--                        generation.model_ranking against one of the lowest (drawn with
--                        pairing.seed)
-- Never chosen: a completion cut at max_tokens (finish_reason 'length'), an empty one, or a
-- degenerate one (repetition above pairing.max_repetition); such texts can still be rejected.
-- A completion's score is the mean over judges and aspects of its rating averaged over the
-- judged orders; NULL (unparseable or N/A) ratings, canaries and position probes are left
-- out. Ties are never paired; equal scores are ranked by completion_id so the result is the
-- same on every run.
-- judge_agreement: the share of judges whose own score puts chosen above rejected.
WITH candidates AS (
    SELECT completion_id, instruction_id, model, 'pooled' AS origin, NULL AS root_completion_id,
           text, finish_reason, repetition
    FROM {{ ref('completions') }}
    UNION ALL
    SELECT completion_id, instruction_id, model, 'evolved' AS origin, root_completion_id,
           text, finish_reason, repetition
    FROM {{ ref('evolved_completions') }}
),
per_aspect AS (
    SELECT completion_id, judge, aspect, avg(rating) AS rating
    FROM {{ ref('ratings') }}
    WHERE rating IS NOT NULL AND purpose = 'label'
    GROUP BY ALL
),
per_judge AS (
    SELECT completion_id, judge, avg(rating) AS score FROM per_aspect GROUP BY ALL
),
scored AS (
    SELECT c.completion_id, c.instruction_id, c.model, c.origin, c.root_completion_id,
           avg(a.rating) AS score,
           coalesce(c.finish_reason, '') <> 'length'
               AND length(trim(coalesce(c.text, ''))) > 0
               AND coalesce(c.repetition, 0) <= {{ var('max_repetition') }} AS can_be_chosen,
           nullif(list_position(CAST({{ var('model_ranking') }} AS VARCHAR[]), c.model), 0) AS model_rank
    FROM candidates AS c
    LEFT JOIN per_aspect AS a USING (completion_id)
    GROUP BY ALL
),
ranked AS (
    SELECT
        *,
        CASE WHEN can_be_chosen AND score IS NOT NULL THEN row_number() OVER (
            PARTITION BY instruction_id, can_be_chosen AND score IS NOT NULL
            ORDER BY score DESC, completion_id
        ) END AS best_rank,
        CASE WHEN score IS NOT NULL THEN row_number() OVER (
            PARTITION BY instruction_id, score IS NOT NULL ORDER BY score ASC, completion_id
        ) END AS worst_rank
    FROM scored
),
ordered_pairs AS (
    SELECT
        c.instruction_id,
        c.completion_id AS chosen_completion_id,
        r.completion_id AS rejected_completion_id,
        c.model AS chosen_model,
        r.model AS rejected_model,
        c.origin AS chosen_origin,
        r.origin AS rejected_origin,
        c.score AS chosen_rating,
        r.score AS rejected_rating,
        c.best_rank AS chosen_best_rank,
        r.worst_rank AS rejected_worst_rank,
        c.root_completion_id AS chosen_root_id,
        row_number() OVER (
            PARTITION BY c.completion_id
            ORDER BY sha256(concat_ws(':', CAST({{ var('pairing_seed') }} AS VARCHAR), c.completion_id, r.completion_id))
        ) AS random_rank,
        row_number() OVER (
            PARTITION BY c.instruction_id
            ORDER BY c.model_rank, r.model_rank DESC,
                     sha256(concat_ws(':', CAST({{ var('pairing_seed') }} AS VARCHAR), c.completion_id, r.completion_id))
        ) AS rule_rank
    FROM ranked AS c
    JOIN ranked AS r
      ON c.instruction_id = r.instruction_id AND c.completion_id <> r.completion_id
    WHERE c.can_be_chosen AND CASE
        WHEN {{ var('judge_decides') }} THEN c.score > r.score
        WHEN {{ var('strategy') }} = 'rule_evolved_over_original'
            THEN c.origin = 'evolved' AND r.completion_id = c.root_completion_id
        WHEN {{ var('strategy') }} = 'rule_stronger_model'
            THEN c.origin = 'pooled' AND r.origin = 'pooled' AND c.model_rank < r.model_rank
        ELSE false
    END
),
selected AS (
    SELECT *
    FROM ordered_pairs
    WHERE CASE {{ var('strategy') }}
        WHEN 'best_vs_worst' THEN chosen_best_rank = 1 AND rejected_worst_rank = 1
        WHEN 'best_vs_random_lower' THEN chosen_best_rank = 1 AND random_rank = 1
        WHEN 'all_pairs' THEN true
        WHEN 'evolved_vs_original' THEN chosen_origin = 'evolved' AND rejected_completion_id = chosen_root_id
        WHEN 'rule_evolved_over_original' THEN true
        WHEN 'rule_stronger_model' THEN rule_rank = 1
        ELSE false
    END
),
agreement AS (
    SELECT s.chosen_completion_id, s.rejected_completion_id,
           avg(CASE WHEN jc.score > jr.score THEN 1.0 ELSE 0.0 END) AS judge_agreement
    FROM selected AS s
    JOIN per_judge AS jc ON jc.completion_id = s.chosen_completion_id
    JOIN per_judge AS jr ON jr.completion_id = s.rejected_completion_id AND jr.judge = jc.judge
    GROUP BY ALL
)
SELECT
    substr(sha256(concat_ws(':', s.chosen_completion_id, s.rejected_completion_id, {{ var('strategy') }})), 1, 20) AS pair_id,
    s.instruction_id,
    s.chosen_completion_id,
    s.rejected_completion_id,
    s.chosen_model,
    s.rejected_model,
    s.chosen_origin,
    s.rejected_origin,
    s.chosen_rating,
    s.rejected_rating,
    s.chosen_rating - s.rejected_rating AS margin,
    {{ var('strategy') }} AS strategy,
    a.judge_agreement
FROM selected AS s
LEFT JOIN agreement AS a USING (chosen_completion_id, rejected_completion_id)
