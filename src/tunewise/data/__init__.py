"""Data stage: raw files -> normalised records -> cleaned, mixed, split JSONL in the run directory.

The record contract (what every reader + format produces, and what templates consume):
    SFT:         {"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...],
                  "source": dataset name, "where": "file:line"}
    with tools:  the same plus "tools": [{"type": "function", "function": {name, description, parameters}}];
                 an assistant turn may carry "tool_calls": [{"type": "function", "function": {"name": str,
                 "arguments": dict}}] (content may be ""), a result is {"role": "tool", "content": str, "name"?: str}
                 (templates/tools.py; read and checked by data/tools.py)
    pretraining: {"text": str, "source": dataset name, "where": "file:line"}
"""
