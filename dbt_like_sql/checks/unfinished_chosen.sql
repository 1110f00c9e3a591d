-- asset: dpo_pairs
-- severity: ERROR
-- blocking: true
-- description: Pairs whose chosen text was cut at max_tokens (finish_reason 'length'), is empty, or is degenerate (repetition above pairing.max_repetition). candidate_pairs.sql never chooses such a text (see candidates.sql); this guards that rule.
SELECT p.pair_id, p.instruction_id, p.chosen_completion_id, t.finish_reason, t.repetition,
       left(t.text, 80) AS chosen_start,
       'pair ' || p.pair_id || ': chosen text '
           || CASE WHEN t.finish_reason = 'length' THEN 'was cut at max_tokens'
                   WHEN length(trim(coalesce(t.text, ''))) = 0 THEN 'is empty'
                   ELSE 'is degenerate (repetition ' || printf('%.2f', t.repetition) || ')'
              END AS reason
FROM {{ ref('dpo_pairs') }} AS p
JOIN {{ ref('candidates') }} AS t ON t.completion_id = p.chosen_completion_id
WHERE coalesce(t.finish_reason, '') = 'length'
   OR length(trim(coalesce(t.text, ''))) = 0
   OR coalesce(t.repetition, 0) > {{ var('max_repetition') }}
