-- asset: instructions
-- severity: ERROR
-- blocking: true
-- description: The batch's row counts do not add up: input_rows <> accepted_rows + rejected_rows, or accepted_rows / rejected_rows differ from the rows actually stored in instructions / rejected_inputs.
SELECT b.batch_id, b.input_rows, b.accepted_rows, b.rejected_rows,
       (SELECT count(*) FROM {{ ref('instructions') }}) AS stored_instructions,
       (SELECT count(*) FROM {{ ref('rejected_inputs') }}) AS stored_rejected_inputs
FROM {{ ref('batches') }} AS b
WHERE b.input_rows <> b.accepted_rows + b.rejected_rows
   OR b.accepted_rows <> (SELECT count(*) FROM {{ ref('instructions') }})
   OR b.rejected_rows <> (SELECT count(*) FROM {{ ref('rejected_inputs') }})
