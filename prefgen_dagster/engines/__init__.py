"""LLM engines behind one interface: `generate(requests) -> results`, in request order."""
