"""Advice before training: the parameter knowledge base (en + zh), the memory estimator, the LR rule, config lint.

explain.py + params.yaml   `tunewise explain`: every config key from the schema's descriptions
(the memory estimator itself is train/memory.py, over models/facts.py and tunewise/hardware.py: training reads it
 too, for train.gradient_checkpointing: auto)
lr.py + families.yaml       learning rate from the pretraining recipe and the batch's supervised tokens
lint.py                     named rules over (config, facts); `lint_before_training` for the train stage
advise.py, cli.py           `tunewise advise` / `tunewise lint`

Also callable: `tunewise.advise(config, **overrides)` runs tunewise.api.advise (see tunewise/_callable.py).
"""

from tunewise._callable import make_callable

make_callable(__name__, "advise")
