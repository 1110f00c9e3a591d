"""Generation: the pool's completions (prompt, plan, diversity guard, run)."""
