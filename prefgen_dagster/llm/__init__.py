"""LLM calls: request/result types, the planned-request shape, the cached runner, the engines."""
