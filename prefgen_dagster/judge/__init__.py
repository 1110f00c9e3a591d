"""Judging: UltraFeedback ratings in three modes, canaries, and the judge's calibration
(prompt, parse, plan, run, canaries, calibration, agreement, summary)."""
