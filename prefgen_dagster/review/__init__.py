"""Human review: a blind sample of a batch's pairs in an annotation tool, and its verdicts back."""
