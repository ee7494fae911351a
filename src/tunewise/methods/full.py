"""Full fine-tuning: every parameter trains; the result is a complete model folder (model/)."""

from __future__ import annotations

from tunewise.methods import register, sizes


@register(
    "full",
    en="Full fine-tuning: every parameter trains (most capacity, most memory: weights + gradients + 2 Adam states; "
    "use a low learning rate).",
    zh="全参数微调：所有参数都训练（能力最强、最耗显存：权重+梯度+两份 Adam 状态；学习率要小）。",
    trainable_params=sizes.full,
)
def apply(model, cfg, ctx=None):
    model.requires_grad_(True)
    return model
