"""Model stage: resolve `model.name_or_path` to a local folder, load model + tokenizer, find targets."""
