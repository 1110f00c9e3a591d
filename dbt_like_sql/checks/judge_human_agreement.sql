-- asset: dpo_pairs
-- severity: ERROR
-- blocking: true
-- description: People disagree with the batch's pairs as made (human_agreement, judge `pairs`): the batch has at least review.min_verdicts scored verdicts and the 95% interval of the agreement with them (ties half) lies below review.min_agreement. Off below review.min_verdicts.
SELECT judge, verdicts, agree, disagree, ties, both_bad, agreement, agreement_ci_low,
       agreement_ci_high,
       'people disagree with the pairs as made: agreement ' || printf('%.2f', agreement)
           || ' (95% CI ' || printf('%.2f', agreement_ci_low) || '-'
           || printf('%.2f', agreement_ci_high) || ', ' || verdicts || ' verdicts: ' || agree
           || ' agree, ' || ties || ' tied, ' || disagree || ' disagree) lies below '
           || 'review.min_agreement ' || {{ var('min_agreement') }} AS reason
FROM {{ ref('human_agreement') }}
WHERE judge = 'pairs'
  AND verdicts >= {{ var('min_verdicts') }}
  AND agreement_ci_high < {{ var('min_agreement') }}
