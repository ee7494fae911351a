"""tunewise: from raw data to a fine-tuned LLM that behaves."""

import os as _os

__version__ = "0.1.0"

# Libraries tunewise drives may phone home (huggingface_hub telemetry, gradio analytics); nothing tunewise does
# needs that. Set before those libraries are imported, and only where the user has not chosen otherwise.
_os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
_os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
