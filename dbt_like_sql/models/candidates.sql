-- Every text that can be paired, one row each: the pool's completions (origin 'pooled') and
-- their EvolQuality rewrites ('evolved'), with what the pair rule and the checks read.
-- A request that failed for good left a row with its error and no text; it is no candidate.
-- not_chosen_because says why a text may be rejected but never chosen: cut at max_tokens
-- (finish_reason 'length'), empty, degenerate (repeated word 3-grams above
-- pairing.max_repetition), or echoing a chat-template marker or a heading of its prompt.
WITH texts AS (
    SELECT completion_id, instruction_id, model, 'pooled' AS origin,
           NULL::VARCHAR AS root_completion_id, text, finish_reason, repetition, embedding,
           echoed_marker
    FROM {{ ref('completions') }}
    WHERE error IS NULL
    UNION ALL
    SELECT completion_id, instruction_id, model, 'evolved' AS origin,
           root_completion_id, text, finish_reason, repetition, embedding, echoed_marker
    FROM {{ ref('evolved_completions') }}
    WHERE error IS NULL
),
judged AS (
    SELECT *,
           CASE WHEN coalesce(finish_reason, '') = 'length' THEN 'cut_at_max_tokens'
                WHEN length(trim(coalesce(text, ''))) = 0 THEN 'empty'
                WHEN echoed_marker IS NOT NULL THEN 'echoes_marker: ' || echoed_marker
                WHEN coalesce(repetition, 0) > {{ var('max_repetition') }}
                    THEN 'degenerate: repetition ' || printf('%.2f', repetition)
           END AS not_chosen_because
    FROM texts
)
SELECT completion_id, instruction_id, model, origin, root_completion_id, text,
       finish_reason, repetition, embedding, echoed_marker,
       length(coalesce(text, '')) AS chars,
       not_chosen_because, not_chosen_because IS NULL AS can_be_chosen
FROM judged
