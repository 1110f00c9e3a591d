-- asset: dpo_pairs
-- severity: ERROR
-- blocking: true
-- description: Pairs whose chosen text may not be chosen: cut at max_tokens, empty, degenerate (repetition above pairing.max_repetition) or echoing a prompt marker (candidates.not_chosen_because). candidate_pairs.sql never chooses such a text; this guards that rule.
SELECT p.pair_id, p.instruction_id, p.chosen_completion_id, t.finish_reason, t.repetition,
       left(t.text, 80) AS chosen_start,
       'pair ' || p.pair_id || ': chosen text is not choosable (' || t.not_chosen_because || ')'
           AS reason
FROM {{ ref('dpo_pairs') }} AS p
JOIN {{ ref('candidates') }} AS t ON t.completion_id = p.chosen_completion_id
WHERE t.not_chosen_because IS NOT NULL
