-- asset: dpo_pairs
-- severity: WARN
-- blocking: false
-- filter: true
-- description: Pairs whose rating margin is below pairing.min_margin, where the judge decides (not under a rule_* strategy); dropped from the export.
SELECT pair_id, instruction_id, chosen_rating, rejected_rating, margin
FROM {{ ref('dpo_pairs') }}
WHERE {{ var('judge_decides') }} AND margin < {{ var('min_margin') }}
