"""One dynamic partition per instruction batch (a file dropped in the inbox; see
`input.batches` for what a batch name may be)."""

import dagster as dg

batches = dg.DynamicPartitionsDefinition(name="batches")
