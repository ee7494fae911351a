"""Performance harness: tunewise against TRL and plain Trainer+peft, measured in one run on this machine."""
