"""A toy fourth LLM stage, whole in this folder: an instruction-clarity scorer."""
