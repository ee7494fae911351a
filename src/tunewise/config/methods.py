"""What each tuning method is, as facts the layers below the method registry need too.

The registry (tunewise/methods) attaches these to each method it registers (`methods.get(name).facts`);
config defaults, the learning-rate advice, the lint and the memory estimate read them from here or from the
registry, never from their own lists of method names. A method registered without facts here is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

LORA_SOURCE = "the QLoRA paper (Dettmers et al., 2023, arXiv:2305.14314) and most LoRA guides"
FULL_SOURCE = "Stanford Alpaca's full fine-tuning of LLaMA 7B (Taori et al., 2023) and most full fine-tuning guides"


# Preference stages (train.stage dpo, orpo, simpo, kto) move a model that already answers well; their usual rates
# are about a tenth of SFT's: TRL's DPOTrainer defaults to 1e-6 for full weights (SFT guides: 1e-5 to 2e-5) and
# LoRA DPO recipes use 5e-6 to 5e-5 (SFT LoRA: 2e-4), e.g. Zephyr (Tunstall et al., 2023, arXiv:2310.16944).
PREFERENCE_LR_FACTOR = 0.1
PREFERENCE_LR_SOURCE = ("TRL's DPOTrainer default (1e-6, full weights) and LoRA DPO recipes (5e-6 to 5e-5), e.g. "
                        "Zephyr (Tunstall et al., 2023, arXiv:2310.16944)")


@dataclass(frozen=True)
class MethodFacts:
    name: str
    trains: Literal["adapter", "weights", "virtual tokens"]  # new parameters beside the base, the base's own, or
    #                                                          learned token embeddings in front of the input
    default_lr: float                # the learning rate a config without train.learning_rate gets
    lr_range: tuple[float, float]    # the usual range (lint warns outside it)
    low_rank: bool = False           # LoRA-style rank and alpha (method.lora_r / lora_alpha / use_rslora)
    quantised_base: bool = False     # the frozen base is loaded quantised (method.quant_bits)
    popular_lr: tuple[float, str] | None = None  # the value guides quote, and where it comes from

    @property
    def adapter_like(self) -> bool:
        """Trains parameters of its own and leaves the base frozen (kept in fp32 by peft, saved apart)."""
        return self.trains != "weights"

    @property
    def virtual_tokens(self) -> bool:
        return self.trains == "virtual tokens"

    def lr_for(self, stage: str) -> float:
        """The default learning rate for a training stage: a tenth for the preference stages."""
        from tunewise.config.schema import PREFERENCE_STAGES

        return self.default_lr * (PREFERENCE_LR_FACTOR if stage in PREFERENCE_STAGES else 1.0)


FACTS: dict[str, MethodFacts] = {f.name: f for f in (  # in the order tables list them
    MethodFacts("lora", "adapter", 2e-4, (2e-4, 1e-3), low_rank=True, popular_lr=(2e-4, LORA_SOURCE)),
    MethodFacts("qlora", "adapter", 2e-4, (2e-4, 1e-3), low_rank=True, quantised_base=True,
                popular_lr=(2e-4, LORA_SOURCE)),
    MethodFacts("full", "weights", 1e-5, (5e-6, 5e-5), popular_lr=(2e-5, FULL_SOURCE)),
    MethodFacts("freeze", "weights", 1e-5, (5e-6, 1e-4),
                popular_lr=(2e-5, "full fine-tuning guides (Stanford Alpaca, Taori et al., 2023)")),
    MethodFacts("prefix", "virtual tokens", 5e-4, (1e-4, 1e-2)),
    MethodFacts("prompt", "virtual tokens", 1e-3, (1e-4, 3e-2)),
    MethodFacts("adapter", "adapter", 2e-4, (1e-4, 1e-3)),
)}


def facts_of(name: str) -> MethodFacts | None:
    """The facts of method `name` (None for an unknown name: the registry's check names the choices)."""
    return FACTS.get(name)
