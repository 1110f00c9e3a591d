-- Every text that can be paired, one row each: the pool's completions (origin 'pooled') and
-- their EvolQuality rewrites ('evolved'), with what the pair rule and the checks read.
-- can_be_chosen is false for a text cut at max_tokens (finish_reason 'length'), an empty
-- one, or a degenerate one (repeated word 3-grams above pairing.max_repetition): such texts
-- can still be rejected, never chosen.
WITH texts AS (
    SELECT completion_id, instruction_id, model, 'pooled' AS origin,
           NULL::VARCHAR AS root_completion_id, text, finish_reason, repetition, embedding
    FROM {{ ref('completions') }}
    UNION ALL
    SELECT completion_id, instruction_id, model, 'evolved' AS origin,
           root_completion_id, text, finish_reason, repetition, embedding
    FROM {{ ref('evolved_completions') }}
)
SELECT completion_id, instruction_id, model, origin, root_completion_id, text,
       finish_reason, repetition, embedding,
       length(coalesce(text, '')) AS chars,
       coalesce(finish_reason, '') <> 'length'
           AND length(trim(coalesce(text, ''))) > 0
           AND coalesce(repetition, 0) <= {{ var('max_repetition') }} AS can_be_chosen
FROM texts
