"""Evaluation stage: metrics (loss, ROUGE, BLEU, exact match, stopping, repetition), forgetting, blind review."""
