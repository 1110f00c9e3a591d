-- asset: dpo_pairs
-- severity: WARN
-- blocking: false
-- filter: true
-- description: Pairs whose chosen and rejected texts say the same thing: where both have an embedding (all-MiniLM-L6-v2, see the `embeddings` setting), a cosine similarity >= checks.near_duplicate_cosine; otherwise a word-set Jaccard similarity >= checks.near_duplicate_similarity (lower-cased runs of letters/digits, via DuckDB's regexp_extract_all + list_intersect: linear in text length, unlike levenshtein/jaro, and unlike the character-set jaccard() it does not saturate near 1 on long texts); dropped from the export.
WITH texts AS (
    SELECT completion_id, text, embedding FROM {{ ref('completions') }}
    UNION ALL
    SELECT completion_id, text, embedding FROM {{ ref('evolved_completions') }}
),
words AS (
    SELECT completion_id, embedding,
           list_distinct(regexp_extract_all(lower(coalesce(text, '')), '[\p{L}\p{N}]+')) AS bag
    FROM texts
),
scored AS (
    SELECT p.pair_id, p.instruction_id, p.chosen_completion_id, p.rejected_completion_id,
           len(c.bag) AS chosen_words, len(r.bag) AS rejected_words,
           len(list_intersect(c.bag, r.bag)) AS shared_words,
           list_cosine_similarity(c.embedding, r.embedding) AS cosine
    FROM {{ ref('dpo_pairs') }} AS p
    JOIN words AS c ON c.completion_id = p.chosen_completion_id
    JOIN words AS r ON r.completion_id = p.rejected_completion_id
)
SELECT pair_id, instruction_id, chosen_completion_id, rejected_completion_id,
       shared_words, chosen_words, rejected_words, similarity, cosine
FROM (
    SELECT *,
           CASE WHEN chosen_words + rejected_words = 0 THEN 1.0  -- both empty: identical
                ELSE shared_words / (chosen_words + rejected_words - shared_words)
           END AS similarity
    FROM scored
)
WHERE CASE WHEN cosine IS NOT NULL THEN cosine >= {{ var('near_duplicate_cosine') }}
           ELSE similarity >= {{ var('near_duplicate_similarity') }}
      END
