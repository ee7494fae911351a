"""Training stage: trainer assembly on transformers Trainer, collators, callbacks; memory.py, the peak-memory
estimate per method (pure arithmetic, calibrated by bench/memory.py) that `advise` and training's automatic choices share.

Also callable: `tunewise.train(config, **overrides) -> Run` runs tunewise.api.train (see tunewise/_callable.py).
"""

from tunewise._callable import make_callable

make_callable(__name__, "train")
