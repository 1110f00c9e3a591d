-- asset: dpo_pairs
-- severity: ERROR
-- blocking: true
-- description: The judge (or panel) whose scores make the pairs rates by position: the same text gains more than checks.max_position_effect rating points (either way) between the first and the last position shown. Applies when the judge decides the pairs; pointwise judging shows one text per request and has no position effect.
SELECT judge, mode, position_effect, position_items,
       'judge ' || regexp_replace(judge, '^.*/', '') || ' rates by position: the same text moves '
           || printf('%+.2f', position_effect) || ' points from first to last position ('
           || position_items || ' texts; bound ' || {{ var('max_position_effect') }} || ')' AS reason
FROM {{ ref('judge_calibration') }}
WHERE sets_labels
  AND {{ var('judge_decides') }}
  AND abs(position_effect) > {{ var('max_position_effect') }}
