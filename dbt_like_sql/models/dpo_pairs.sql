-- The final chosen/rejected pairs: the candidate pairs that no rule dropped. The export reads
-- them as they are; what was dropped, and why, stays queryable in candidate_pairs.
-- `human_review` says what people's verdicts did to a pair (kept it, or flipped its sides).
-- `settings_hash` names the settings of every stage the pairs were made with (a settings
-- change re-runs the stages it touches and then this model).
SELECT pair_id, instruction_id, chosen_completion_id, rejected_completion_id,
       chosen_model, rejected_model, chosen_origin, rejected_origin,
       chosen_rating, rejected_rating, margin, strategy, judge_agreement, human_review,
       {{ var('settings_hash') }} AS settings_hash
FROM {{ ref('candidate_pairs') }}
WHERE dropped_because IS NULL
-- depends_on: {{ ref('human_agreement') }}  (after it, so this asset's metadata and plots show
-- the batch's agreement with people as of these pairs)
