"""Bundled sample data written by code: the demo set and the long-answer instructions.

Pure data with no stage behind it, at the bottom of the stages: the demo, the tiny test models' tokenizers
and the tests all draw on it.
"""
