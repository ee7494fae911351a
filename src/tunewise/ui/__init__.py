"""`tunewise ui`: a local web board (gradio) that drives the same stages and run directories as the CLI."""
