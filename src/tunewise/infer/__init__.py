"""Inference stage: load a run's model with its training template, generate, chat."""
