"""`realrag eval`: the evaluation harness (arms, metrics, bootstrap CIs, JSON/markdown/PNG report)."""
