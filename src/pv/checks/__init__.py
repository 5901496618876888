"""Stage 2, checks: compile validated obligations into checks, bind implementations, run the
engines (exhaustive, Hypothesis, CrossHair) and judge verdicts."""
