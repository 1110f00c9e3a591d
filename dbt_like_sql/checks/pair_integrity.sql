-- asset: dpo_pairs
-- severity: ERROR
-- blocking: true
-- description: Pairs where the judge decides (pairing.strategy not rule_*) and chosen is not rated above rejected (or a rating is NULL), unless people's verdicts flipped the pair (human_review), or where the two answer different instructions, or a completion is missing.
SELECT p.pair_id, p.instruction_id, p.chosen_rating, p.rejected_rating,
       c.instruction_id AS chosen_instruction, r.instruction_id AS rejected_instruction
FROM {{ ref('dpo_pairs') }} AS p
LEFT JOIN {{ ref('candidates') }} AS c ON c.completion_id = p.chosen_completion_id
LEFT JOIN {{ ref('candidates') }} AS r ON r.completion_id = p.rejected_completion_id
WHERE ({{ var('judge_decides') }} AND NOT coalesce(p.chosen_rating > p.rejected_rating, false)
       AND NOT starts_with(coalesce(p.human_review, ''), 'flipped'))
   OR c.instruction_id IS DISTINCT FROM p.instruction_id
   OR r.instruction_id IS DISTINCT FROM p.instruction_id
