-- Each judge's score of each text it rated for the labels: the mean over aspects of the
-- aspect's rating averaged over the orders the text was judged in. NULL (unparseable or N/A)
-- ratings, canaries and position probes are left out; a text a judge left wholly unrated has
-- no row for that judge. The pair models read scores here, so a score means one thing in
-- the pairs and in their agreement with people.
--   score    the judge's mean over its rated aspects
--   aspects  how many aspects that mean is over (to pool judges aspect by aspect: the
--            panel's score of a text is sum(score * aspects) / sum(aspects))
SELECT completion_id, judge, avg(rating) AS score, count(*) AS aspects
FROM (
    SELECT completion_id, judge, aspect, avg(rating) AS rating
    FROM {{ ref('ratings') }}
    WHERE rating IS NOT NULL AND purpose = 'label'
    GROUP BY ALL
)
GROUP BY ALL
