-- Every chosen/rejected pair the configured strategy (pairing.strategy) makes, and whether a
-- rule dropped it (dropped_because; NULL for the pairs in dpo_pairs). The judge decides:
--   best_vs_worst        the best- against the worst-rated completion of each instruction
--   best_vs_random_lower the best against one lower-rated completion drawn with pairing.seed
--   all_pairs            every pair of completions whose scores differ
--   evolved_vs_original  each EvolQuality rewrite against its pooled original, only where the
--                        judge rated the rewrite higher ("evolved is better" is checked)
-- A rule decides (no judge needed; a judge's scores, where present, are kept for comparison):
--   rule_evolved_over_original  each rewrite against its pooled original
--   rule_stronger_model  per instruction, an answer of the highest model in
--                        generation.model_ranking against one of the lowest (drawn with
--                        pairing.seed)
-- Only a candidate that can_be_chosen (see candidates) is ever chosen.
-- A completion's score is the mean over judges and aspects of its rating averaged over the
-- judged orders (judge_scores pooled by aspect). Ties are never paired; equal scores are ranked by completion_id so the result is the
-- same on every run.
-- judge_agreement: the share of judges whose own score puts chosen above rejected.
-- People's verdicts (human_verdicts, on the pair as it was sent for review) correct it: the
-- majority of a pair's verdicts (the choice given more often than any other; a tie between
-- choices is no majority and changes nothing) says `rejected`: the pair is flipped (chosen
-- and rejected swapped, with their ratings, margin and judge_agreement) under
-- review.on_disagreement = flip, where the rejected text may be chosen, else dropped; says
-- `both_bad`: dropped. human_review says what the verdicts did (`kept`, `flipped` or
-- `dropped`, then the count); NULL: no verdict. A flipped pair keeps its pair_id.
-- Dropped (the first reason that applies):
--   human           the majority of people's verdicts, as above
--   low_margin      the judge decides and the margin is below pairing.min_margin
--   near_duplicate  chosen and rejected say the same thing: where both have an embedding
--                   (all-MiniLM-L6-v2, see the `embeddings` setting), cosine similarity >=
--                   checks.near_duplicate_cosine; otherwise word-set Jaccard similarity >=
--                   checks.near_duplicate_similarity (lower-cased runs of letters and digits:
--                   linear in text length, and unlike a character-set Jaccard it does not
--                   saturate near 1 on long texts)
WITH per_judge AS (
    SELECT completion_id, judge, score, aspects FROM {{ ref('judge_scores') }}
),
scored AS (
    SELECT c.completion_id, c.instruction_id, c.model, c.origin, c.root_completion_id,
           c.can_be_chosen, sum(j.score * j.aspects) / sum(j.aspects) AS score,
           nullif(list_position(CAST({{ var('model_ranking') }} AS VARCHAR[]), c.model), 0) AS model_rank
    FROM {{ ref('candidates') }} AS c
    LEFT JOIN per_judge AS j USING (completion_id)
    GROUP BY ALL
),
ranked AS (
    SELECT
        *,
        CASE WHEN can_be_chosen AND score IS NOT NULL THEN row_number() OVER (
            PARTITION BY instruction_id, can_be_chosen AND score IS NOT NULL
            ORDER BY score DESC, completion_id
        ) END AS best_rank,
        CASE WHEN score IS NOT NULL THEN row_number() OVER (
            PARTITION BY instruction_id, score IS NOT NULL ORDER BY score ASC, completion_id
        ) END AS worst_rank
    FROM scored
),
ordered_pairs AS (
    SELECT
        c.instruction_id,
        c.completion_id AS chosen_completion_id,
        r.completion_id AS rejected_completion_id,
        c.model AS chosen_model,
        r.model AS rejected_model,
        c.origin AS chosen_origin,
        r.origin AS rejected_origin,
        c.score AS chosen_rating,
        r.score AS rejected_rating,
        c.best_rank AS chosen_best_rank,
        r.worst_rank AS rejected_worst_rank,
        c.root_completion_id AS chosen_root_id,
        row_number() OVER (
            PARTITION BY c.completion_id
            ORDER BY sha256(concat_ws(':', CAST({{ var('pairing_seed') }} AS VARCHAR), c.completion_id, r.completion_id))
        ) AS random_rank,
        row_number() OVER (
            PARTITION BY c.instruction_id
            ORDER BY c.model_rank, r.model_rank DESC,
                     sha256(concat_ws(':', CAST({{ var('pairing_seed') }} AS VARCHAR), c.completion_id, r.completion_id))
        ) AS rule_rank
    FROM ranked AS c
    JOIN ranked AS r
      ON c.instruction_id = r.instruction_id AND c.completion_id <> r.completion_id
    WHERE c.can_be_chosen AND CASE
        WHEN {{ var('judge_decides') }} THEN c.score > r.score
        WHEN {{ var('strategy') }} = 'rule_evolved_over_original'
            THEN c.origin = 'evolved' AND r.completion_id = c.root_completion_id
        WHEN {{ var('strategy') }} = 'rule_stronger_model'
            THEN c.origin = 'pooled' AND r.origin = 'pooled' AND c.model_rank < r.model_rank
        ELSE false
    END
),
selected AS (
    SELECT *
    FROM ordered_pairs
    WHERE CASE {{ var('strategy') }}
        WHEN 'best_vs_worst' THEN chosen_best_rank = 1 AND rejected_worst_rank = 1
        WHEN 'best_vs_random_lower' THEN chosen_best_rank = 1 AND random_rank = 1
        WHEN 'all_pairs' THEN true
        WHEN 'evolved_vs_original' THEN chosen_origin = 'evolved' AND rejected_completion_id = chosen_root_id
        WHEN 'rule_evolved_over_original' THEN true
        WHEN 'rule_stronger_model' THEN rule_rank = 1
        ELSE false
    END
),
agreement AS (
    SELECT s.chosen_completion_id, s.rejected_completion_id,
           avg(CASE WHEN jc.score > jr.score THEN 1.0 ELSE 0.0 END) AS judge_agreement,
           avg(CASE WHEN jr.score > jc.score THEN 1.0 ELSE 0.0 END) AS judge_agreement_flipped
    FROM selected AS s
    JOIN per_judge AS jc ON jc.completion_id = s.chosen_completion_id
    JOIN per_judge AS jr ON jr.completion_id = s.rejected_completion_id AND jr.judge = jc.judge
    GROUP BY ALL
),
pairs AS (
    SELECT
        substr(sha256(concat_ws(':', s.chosen_completion_id, s.rejected_completion_id, {{ var('strategy') }})), 1, 20) AS pair_id,
        s.instruction_id,
        s.chosen_completion_id,
        s.rejected_completion_id,
        s.chosen_model,
        s.rejected_model,
        s.chosen_origin,
        s.rejected_origin,
        s.chosen_rating,
        s.rejected_rating,
        s.chosen_rating - s.rejected_rating AS margin,
        {{ var('strategy') }} AS strategy,
        a.judge_agreement,
        a.judge_agreement_flipped
    FROM selected AS s
    LEFT JOIN agreement AS a USING (chosen_completion_id, rejected_completion_id)
),
words AS (
    SELECT completion_id, embedding, can_be_chosen, not_chosen_because,
           list_distinct(regexp_extract_all(lower(coalesce(text, '')), '[\p{L}\p{N}]+')) AS bag
    FROM {{ ref('candidates') }}
    WHERE completion_id IN (SELECT chosen_completion_id FROM pairs)
       OR completion_id IN (SELECT rejected_completion_id FROM pairs)
),
similarity AS (
    SELECT p.pair_id, p.instruction_id, p.chosen_completion_id, p.rejected_completion_id,
           p.chosen_model, p.rejected_model, p.chosen_origin, p.rejected_origin,
           p.chosen_rating, p.rejected_rating, p.margin, p.strategy, p.judge_agreement,
           p.judge_agreement_flipped, r.can_be_chosen AS rejected_can_be_chosen,
           r.not_chosen_because AS rejected_not_chosen_because,
           list_cosine_similarity(c.embedding, r.embedding) AS cosine,
           CASE WHEN len(c.bag) + len(r.bag) = 0 THEN 1.0  -- both empty: identical
                ELSE len(list_intersect(c.bag, r.bag))
                     / (len(c.bag) + len(r.bag) - len(list_intersect(c.bag, r.bag)))
           END AS word_similarity
    FROM pairs AS p
    JOIN words AS c ON c.completion_id = p.chosen_completion_id
    JOIN words AS r ON r.completion_id = p.rejected_completion_id
),
tallies AS (
    SELECT pair_id, choice, count(*) AS votes,
           sum(count(*)) OVER (PARTITION BY pair_id) AS verdicts,
           rank() OVER (PARTITION BY pair_id ORDER BY count(*) DESC) AS place
    FROM {{ ref('human_verdicts') }}
    GROUP BY pair_id, choice
),
majorities AS (
    SELECT pair_id, any_value(verdicts) AS verdicts,
           CASE WHEN count(*) FILTER (WHERE place = 1) = 1
                THEN any_value(choice) FILTER (WHERE place = 1) END AS majority,
           max(votes) AS votes,
           string_agg(votes || ' ' || choice, ', ' ORDER BY votes DESC, choice) AS tally
    FROM tallies
    GROUP BY pair_id
),
reviewed AS (
    SELECT s.*, m.verdicts, m.majority, m.tally,
           m.votes || ' of ' || m.verdicts || ' verdicts' AS share,
           m.majority = 'rejected' AND {{ var('on_disagreement') }} = 'flip'
               AND s.rejected_can_be_chosen AS flipped
    FROM similarity AS s
    LEFT JOIN majorities AS m USING (pair_id)
),
decided AS (
    SELECT *,
           CASE
               WHEN majority = 'both_bad' THEN 'human: both_bad (' || share || ')'
               WHEN majority = 'rejected' AND NOT flipped
                   THEN 'human: rejected preferred (' || share || '; '
                        || CASE WHEN rejected_can_be_chosen
                                THEN 'review.on_disagreement = drop'
                                ELSE 'the rejected text may not be chosen: '
                                     || rejected_not_chosen_because END || ')'
               WHEN {{ var('judge_decides') }} AND margin < {{ var('min_margin') }}
                   THEN 'low_margin: ' || printf('%.2f', margin) || ' < pairing.min_margin '
                        || {{ var('min_margin') }}
               WHEN cosine >= {{ var('near_duplicate_cosine') }}
                   THEN 'near_duplicate: cosine ' || printf('%.3f', cosine)
               WHEN cosine IS NULL AND word_similarity >= {{ var('near_duplicate_similarity') }}
                   THEN 'near_duplicate: word overlap ' || printf('%.3f', word_similarity)
           END AS dropped_because,
           CASE
               WHEN verdicts IS NULL THEN NULL
               WHEN flipped THEN 'flipped: ' || share || ' prefer the rejected text'
               WHEN majority = 'rejected' THEN 'dropped: ' || share || ' prefer the rejected text'
               WHEN majority = 'both_bad' THEN 'dropped: ' || share || ' call both texts bad'
               WHEN majority = 'chosen' THEN 'kept: ' || share || ' prefer the chosen text'
               WHEN majority = 'tie' THEN 'kept: ' || share || ' call the texts equal'
               ELSE 'kept: no majority (' || tally || ')'
           END AS human_review
    FROM reviewed
)
SELECT pair_id, instruction_id,
       CASE WHEN flipped THEN rejected_completion_id ELSE chosen_completion_id END
           AS chosen_completion_id,
       CASE WHEN flipped THEN chosen_completion_id ELSE rejected_completion_id END
           AS rejected_completion_id,
       CASE WHEN flipped THEN rejected_model ELSE chosen_model END AS chosen_model,
       CASE WHEN flipped THEN chosen_model ELSE rejected_model END AS rejected_model,
       CASE WHEN flipped THEN rejected_origin ELSE chosen_origin END AS chosen_origin,
       CASE WHEN flipped THEN chosen_origin ELSE rejected_origin END AS rejected_origin,
       CASE WHEN flipped THEN rejected_rating ELSE chosen_rating END AS chosen_rating,
       CASE WHEN flipped THEN chosen_rating ELSE rejected_rating END AS rejected_rating,
       CASE WHEN flipped THEN -margin ELSE margin END AS margin,
       strategy,
       CASE WHEN flipped THEN judge_agreement_flipped ELSE judge_agreement END
           AS judge_agreement,
       cosine, word_similarity, human_review, dropped_because
FROM decided
