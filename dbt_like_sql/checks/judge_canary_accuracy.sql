-- asset: dpo_pairs
-- severity: ERROR
-- blocking: true
-- description: The judge (or panel) whose scores make the pairs is not shown to be better than chance on the batch's canaries: the 95% interval of its canary accuracy does not lie above checks.min_canary_accuracy, or no canary could be scored. Applies when the judge decides the pairs and canaries are on.
SELECT judge, mode, canaries, canaries_correct, canaries_tied, canaries_wrong,
       canaries_unscored, canary_accuracy, canary_ci_low, canary_ci_high,
       CASE WHEN canaries = 0
            THEN 'judge ' || regexp_replace(judge, '^.*/', '') || ': no canary could be scored (' || canaries_unscored
                 || ' unscored), so its labels are unmeasured'
            ELSE 'judge ' || regexp_replace(judge, '^.*/', '') || ' is not shown better than chance on its canaries: accuracy '
                 || printf('%.2f', canary_accuracy) || ' (95% CI ' || printf('%.2f', canary_ci_low)
                 || '-' || printf('%.2f', canary_ci_high) || ', ' || canaries || ' canaries)'
       END AS reason
FROM {{ ref('judge_calibration') }}
WHERE sets_labels
  AND {{ var('judge_decides') }}
  AND {{ var('canaries_enabled') }}
  AND (canaries = 0 OR canary_ci_low <= {{ var('min_canary_accuracy') }})
