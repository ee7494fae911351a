"""Training stage: trainer assembly on transformers Trainer, collators, callbacks."""
