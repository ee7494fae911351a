"""tunewise: from raw data to a fine-tuned LLM that behaves."""

__version__ = "0.1.0"
