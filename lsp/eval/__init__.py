"""`loopcoder eval`: HumanEval-style pass@1, each candidate program run in a sandbox."""
