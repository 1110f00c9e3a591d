-- How far people agree with the batch's labels: its human_verdicts on the reviewed pairs, one
-- row for the pairs as made (judge `pairs`: the judge's or panel's scores, or the rule) and
-- one per judge (its own scores in judge_scores), scored against each pair as it was sent
-- for review (a flipped pair's sides swapped back). No verdicts: no rows.
--   agree           the verdict prefers the text the labels put first
--   disagree        it prefers the other one
--   ties            the verdict calls the texts equal, or the judge rated them the same:
--                   half credit, as the canary accuracy counts ties
--   both_bad        verdicts that call both texts bad: not scored
-- agreement = (agree + ties / 2) / verdicts, with its 95% Wilson interval. A judge that left
-- a text of the pair unrated has no say on it. annotator_agreement: the share of pairs of
-- verdicts on the same pair that give the same choice (NULL while no pair has two).
-- unmatched_verdicts: verdicts on pairs the batch no longer makes (its ratings or settings
-- changed since the push); they count nowhere else. By margin bucket (the pair's |margin|
-- for `pairs`, the judge's own score difference for a judge): under 1, 1 to 2, 2 and up.
-- canary_accuracy: the same judge's (for `pairs`: the label-setting row's) in
-- judge_calibration, for comparison.
WITH verdicts AS (
    SELECT pair_id, annotator, choice FROM {{ ref('human_verdicts') }}
),
made AS (
    SELECT pair_id,
           CASE WHEN flipped THEN rejected_completion_id ELSE chosen_completion_id END AS chosen_id,
           CASE WHEN flipped THEN chosen_completion_id ELSE rejected_completion_id END AS rejected_id,
           abs(margin) AS margin
    FROM (
        SELECT *, starts_with(coalesce(human_review, ''), 'flipped') AS flipped
        FROM {{ ref('candidate_pairs') }}
    )
),
per_judge AS (
    SELECT completion_id, judge, score FROM {{ ref('judge_scores') }}
),
says AS (
    -- +1: the labels put the pair's chosen text first; -1: its rejected text; 0: equal.
    SELECT pair_id, 'pairs' AS judge, 1 AS side, margin FROM made
    UNION ALL
    SELECT m.pair_id, jc.judge, sign(jc.score - jr.score) AS side,
           abs(jc.score - jr.score) AS margin
    FROM made AS m
    JOIN per_judge AS jc ON jc.completion_id = m.chosen_id
    JOIN per_judge AS jr ON jr.completion_id = m.rejected_id AND jr.judge = jc.judge
),
scored AS (
    SELECT s.judge, s.margin, v.choice,
           CASE WHEN v.choice = 'both_bad' THEN NULL
                WHEN v.choice = 'tie' OR s.side = 0 THEN 0.5
                WHEN (s.side > 0) = (v.choice = 'chosen') THEN 1.0
                ELSE 0.0
           END AS credit
    FROM says AS s
    JOIN verdicts AS v USING (pair_id)
),
judges AS (
    SELECT 'pairs' AS judge WHERE EXISTS (SELECT 1 FROM verdicts)
    UNION
    SELECT DISTINCT judge FROM scored
),
figures AS (
    SELECT j.judge,
           count(s.credit) AS verdicts,
           count(*) FILTER (WHERE s.credit = 1.0) AS agree,
           count(*) FILTER (WHERE s.credit = 0.0) AS disagree,
           count(*) FILTER (WHERE s.credit = 0.5) AS ties,
           count(*) FILTER (WHERE s.choice = 'both_bad') AS both_bad,
           avg(s.credit) AS agreement,
           count(s.credit) FILTER (WHERE s.margin < 1) AS verdicts_margin_under_1,
           avg(s.credit) FILTER (WHERE s.margin < 1) AS agreement_margin_under_1,
           count(s.credit) FILTER (WHERE s.margin >= 1 AND s.margin < 2) AS verdicts_margin_1_to_2,
           avg(s.credit) FILTER (WHERE s.margin >= 1 AND s.margin < 2) AS agreement_margin_1_to_2,
           count(s.credit) FILTER (WHERE s.margin >= 2) AS verdicts_margin_2_up,
           avg(s.credit) FILTER (WHERE s.margin >= 2) AS agreement_margin_2_up
    FROM judges AS j
    LEFT JOIN scored AS s USING (judge)
    GROUP BY j.judge
),
wilson AS (
    -- z = 1.959964 (95%), as calibration.wilson_interval
    SELECT *,
           (agreement + 1.959964 ^ 2 / (2 * n)) / (1 + 1.959964 ^ 2 / n) AS centre,
           1.959964 * sqrt(agreement * (1 - agreement) / n + 1.959964 ^ 2 / (4 * n ^ 2))
               / (1 + 1.959964 ^ 2 / n) AS spread
    FROM (SELECT *, nullif(verdicts, 0) AS n FROM figures)
),
annotators AS (
    SELECT count(*) AS annotator_pairs,
           avg(CASE WHEN a.choice = b.choice THEN 1.0 ELSE 0.0 END) AS annotator_agreement
    FROM verdicts AS a
    JOIN verdicts AS b ON a.pair_id = b.pair_id AND a.annotator < b.annotator
)
SELECT w.judge, w.verdicts, w.agree, w.disagree, w.ties, w.both_bad, w.agreement,
       greatest(0.0, w.centre - w.spread) AS agreement_ci_low,
       least(1.0, w.centre + w.spread) AS agreement_ci_high,
       a.annotator_agreement, a.annotator_pairs,
       (SELECT count(*) FROM verdicts WHERE pair_id NOT IN (SELECT pair_id FROM made))
           AS unmatched_verdicts,
       w.verdicts_margin_under_1, w.agreement_margin_under_1,
       w.verdicts_margin_1_to_2, w.agreement_margin_1_to_2,
       w.verdicts_margin_2_up, w.agreement_margin_2_up,
       c.canary_accuracy
FROM wilson AS w
CROSS JOIN annotators AS a
LEFT JOIN {{ ref('judge_calibration') }} AS c
  ON c.judge = w.judge OR (w.judge = 'pairs' AND c.sets_labels)
