-- asset: dpo_pairs
-- severity: WARN
-- blocking: false
-- description: Pairs whose chosen or rejected text length is more than checks.length_outlier_mads median absolute deviations from the batch median.
WITH center AS (
    SELECT median(chars) AS med FROM {{ ref('candidates') }}
),
spread AS (
    SELECT median(abs(t.chars - c.med)) AS mad FROM {{ ref('candidates') }} AS t, center AS c
),
outliers AS (
    SELECT t.completion_id, t.chars
    FROM {{ ref('candidates') }} AS t, center AS c, spread AS s
    WHERE abs(t.chars - c.med) > {{ var('length_outlier_mads') }} * greatest(s.mad, 1)
)
SELECT p.pair_id, p.instruction_id, o.completion_id AS outlier_completion_id, o.chars
FROM {{ ref('dpo_pairs') }} AS p
JOIN outliers AS o ON o.completion_id IN (p.chosen_completion_id, p.rejected_completion_id)
