"""The engines behind `llm.types.Engine`: vLLM in-process and any OpenAI-compatible server."""
