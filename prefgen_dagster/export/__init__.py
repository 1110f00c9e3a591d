"""The final dataset: exportable batches, TRL records, the card."""
