"""EvolQuality: rewrites of the pooled completions (prompt, plan, run)."""
