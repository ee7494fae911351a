"""Curves stage: read metrics.jsonl, give a verdict with evidence and advice, plot and report."""
