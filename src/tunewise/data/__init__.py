"""Data stage: raw files -> normalised records -> cleaned, mixed, split JSONL in the run directory.

The record contract (what every reader + format produces, and what templates consume):
    SFT:         {"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...],
                  "source": dataset name, "where": "file:line"}
    pretraining: {"text": str, "source": dataset name, "where": "file:line"}
"""
