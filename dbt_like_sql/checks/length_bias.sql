-- asset: dpo_pairs
-- severity: WARN
-- blocking: false
-- description: When the batch has at least checks.min_pairs_for_length_bias pairs and the share whose chosen text is longer than the rejected one exceeds checks.max_length_bias, the pairs with the longer chosen text (the judges may be rewarding length).
WITH sized AS (
    SELECT p.pair_id, p.instruction_id,
           coalesce(c.chars, 0) AS chosen_chars, coalesce(r.chars, 0) AS rejected_chars
    FROM {{ ref('dpo_pairs') }} AS p
    LEFT JOIN {{ ref('candidates') }} AS c ON c.completion_id = p.chosen_completion_id
    LEFT JOIN {{ ref('candidates') }} AS r ON r.completion_id = p.rejected_completion_id
),
bias AS (
    SELECT count(*) AS pairs,
           avg(CASE WHEN chosen_chars > rejected_chars THEN 1.0 ELSE 0.0 END) AS longer_share
    FROM sized
)
SELECT s.pair_id, s.instruction_id, s.chosen_chars, s.rejected_chars, b.pairs, b.longer_share
FROM sized AS s, bias AS b
WHERE s.chosen_chars > s.rejected_chars
  AND b.pairs >= {{ var('min_pairs_for_length_bias') }}
  AND b.longer_share > {{ var('max_length_bias') }}
