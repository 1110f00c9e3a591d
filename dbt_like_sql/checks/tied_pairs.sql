-- asset: dpo_pairs
-- severity: WARN
-- blocking: false
-- filter: true
-- description: Pairs whose chosen rating is not above the rejected one (margin <= 0), where the judge decides (not under a rule_* strategy): nothing to learn from; dropped from the export.
SELECT pair_id, instruction_id, chosen_completion_id, rejected_completion_id,
       chosen_rating, rejected_rating, margin
FROM {{ ref('dpo_pairs') }}
WHERE {{ var('judge_decides') }} AND (margin <= 0 OR chosen_rating <= rejected_rating)
