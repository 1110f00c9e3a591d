-- asset: dpo_pairs
-- severity: WARN
-- blocking: false
-- filter: true
-- description: Pairs whose rating margin is below pairing.min_margin; dropped from the export.
SELECT pair_id, instruction_id, chosen_rating, rejected_rating, margin
FROM {{ ref('dpo_pairs') }}
WHERE margin < {{ var('min_margin') }}
