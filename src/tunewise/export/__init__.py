"""Export stage: merge, GGUF, Ollama Modelfile, Hub push, and verification against the HF model."""
