"""Divergence is an error: what a NaN/inf stop keeps, and how a diverged run is reported."""

from __future__ import annotations

import shutil
from pathlib import Path

from tunewise.console import say as _say
from tunewise.errors import RunError
from tunewise.runs import newest_checkpoint, scan_checkpoints


def drop_poisoned_checkpoints(run: Path, nan_step: int) -> Path | None:
    """The loss of step N is computed with the weights after N-1 updates: when it is NaN/inf, checkpoint-(N-1)
    (saved before the NaN showed) holds weights that already produce it. Remove it and any later one; return
    the last good checkpoint."""
    scan = scan_checkpoints(run)
    for ck in scan.complete:
        if int(ck.name.rsplit("-", 1)[1]) >= nan_step - 1:
            _say(f"[tunewise] removing {ck}: its weights already produce the NaN/inf loss")
            shutil.rmtree(ck, ignore_errors=True)
    return newest_checkpoint(run)


def diverged_error(run: Path, what: str, good: Path | None, saved_after: bool = False) -> RunError:
    """Divergence is an error (exit status 2), with where the usable weights are."""
    if good is not None:
        keeps = (f"the last good checkpoint, {good}, is kept: `tunewise eval/chat/export {run}` use it "
                 "(train_summary.json: last_good_checkpoint)")
    elif saved_after:
        keeps = "the checkpoints and the result were saved after it and are not usable"
    else:
        keeps = "no good checkpoint was saved before it"
    return RunError(f"training diverged: {what}; {keeps}", where=str(run),
                    fix="lower train.learning_rate 3-10x (`tunewise lint CONFIG` shows the usual range) and train again "
                    "with --overwrite or a new run name (a resumed run would keep the checkpoint's learning rate); "
                    "the diagnosis is in diagnosis.json and report.html")


def divergence_cause(ev: dict) -> str:
    if ev.get("blown_up_update"):
        return (f"got stuck at {ev.get('loss_flat_at', float('nan')):.4g}"
                + (f" = ln(vocabulary {ev['vocab_size']})" if ev.get("vocab_size") else "")
                + " with zero gradient: an update so large it flattened the model's predictions")
    if "ratio" in ev:
        return f"grew to {ev['ratio']:.3g}x its starting value"
    return "became NaN/inf"
