"""Each speed optimisation gives the same loss as the plain path (within float tolerance)."""

import pytest
import torch

from tunewise.train.collate import PackCollator, PadCollator
from tunewise.train.trainer import supervised_loss


@pytest.fixture(scope="module", params=["tiny-llama", "tiny-qwen2", "tiny-gemma3"])
def setup(request, tiny_model_dirs):
    from conftest import tiny_features

    from tunewise.samples.demo import demo_records

    return tiny_features(tiny_model_dirs[request.param], demo_records()[:6], 128)


def _plain_loss_sum(model, batch):
    out = model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask"),
                position_ids=batch.get("position_ids"), use_cache=False)
    logits = out.logits[:, :-1].float()
    y = batch["labels"][:, 1:]
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1),
                                             ignore_index=-100, reduction="sum"), int((y != -100).sum())


@torch.no_grad()
def test_fast_loss_equals_plain_loss(setup):
    model, tok, feats = setup
    batch = PadCollator(tok.pad_token_id)(feats)
    ref_sum, n = _plain_loss_sum(model, batch)
    fast = supervised_loss(model, batch, chunk_size=1024)
    chunked = supervised_loss(model, batch, chunk_size=7)  # many chunks
    assert float(fast) == pytest.approx(float(ref_sum) / n, rel=1e-5)
    assert float(chunked) == pytest.approx(float(ref_sum) / n, rel=1e-5)


def test_fast_loss_gradients_equal_plain(setup):
    model, tok, feats = setup
    batch = PadCollator(tok.pad_token_id)(feats[:3])
    model.zero_grad()
    s, n = _plain_loss_sum(model, batch)
    (s / n).backward()
    ref = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    supervised_loss(model, batch, chunk_size=5).backward()
    for k, p in model.named_parameters():
        if k in ref:
            torch.testing.assert_close(p.grad, ref[k], rtol=1e-4, atol=1e-6)
    model.zero_grad()


@torch.no_grad()
def test_packing_never_attends_across_examples(setup):
    model, tok, feats = setup
    packed = PackCollator()(feats)
    assert packed["input_ids"].shape[0] == 1 and "attention_mask" not in packed
    total, count = 0.0, 0
    for f in feats:  # each example alone, first label dropped as the packer does
        lab = list(f["labels"])
        lab[0] = -100
        single = PadCollator(tok.pad_token_id)([{"input_ids": f["input_ids"], "labels": lab}])
        s, n = _plain_loss_sum(model, single)
        total, count = total + float(s), count + n
    s, n = _plain_loss_sum(model, packed)
    assert n == count
    assert float(s) / n == pytest.approx(total / count, rel=1e-5)
    # Stronger: the logits of every example inside the pack equal its logits alone.
    logits = model(input_ids=packed["input_ids"], position_ids=packed["position_ids"], use_cache=False).logits[0]
    start = 0
    for f in feats:
        k = len(f["input_ids"])
        alone = model(input_ids=torch.tensor([f["input_ids"]]), use_cache=False).logits[0]
        torch.testing.assert_close(logits[start:start + k], alone, rtol=1e-4, atol=1e-4)
        start += k


@torch.no_grad()
def test_packed_row_rounded_to_a_multiple_scores_and_attends_as_the_unrounded_row(setup):
    """The padding segment that rounds a packed row's length (CPU bf16: few matmul shapes) changes nothing: same
    loss, same logits for every example, labels ignored there, and the trainer is told how many tokens it holds."""
    from tunewise.train.collate import row_multiple

    model, tok, feats = setup
    plain = PackCollator()(feats)
    rounded = PackCollator(tok.pad_token_id, round_rows=True)(feats)
    n, k = plain["input_ids"].shape[1], rounded["input_ids"].shape[1]
    m = row_multiple(n)
    assert k % m == 0 and n <= k < n + m and int(rounded["pad_tokens"].sum()) == k - n
    assert (rounded["labels"][0, n:] == -100).all() and rounded["position_ids"][0, n:].tolist() == list(range(k - n))
    assert "pad_tokens" not in plain
    inputs = {key: v for key, v in rounded.items() if key != "pad_tokens"}
    assert float(supervised_loss(model, inputs, chunk_size=64)) == pytest.approx(
        float(supervised_loss(model, plain, chunk_size=64)), rel=1e-5)
    a = model(input_ids=plain["input_ids"], position_ids=plain["position_ids"], use_cache=False).logits[0]
    b = model(input_ids=rounded["input_ids"], position_ids=rounded["position_ids"], use_cache=False).logits[0, :n]
    torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)


def test_row_multiple_keeps_few_shapes_and_little_padding():
    from tunewise.train.collate import row_multiple

    assert [row_multiple(n) for n in (1, 100, 128, 255, 256, 600, 1023, 1024, 5000)] == [8, 8, 16, 16, 32, 64, 64, 64, 64]
    rounded = {n + -n % row_multiple(n) for n in range(512, 1024)}
    assert len(rounded) <= 9  # a whole doubling of lengths in at most 9 shapes
    assert all(-n % row_multiple(n) <= n / 8 for n in range(64, 4096))  # never more than an eighth padding


def test_packed_rows_are_rounded_only_on_a_cpu_in_bf16(tmp_path, tiny_model_dirs, demo_jsonl):
    """rounds_rows' rule, the trainer it reaches, and tokens/s that counts the examples' tokens, not padding."""
    from conftest import tiny_config

    from tunewise.config import load_config
    from tunewise.train.assemble import build_trainer, load_prepared
    from tunewise.train.collate import rounds_rows

    assert rounds_rows("bf16", "cpu") and not rounds_rows("fp32", "cpu") and not rounds_rows("bf16", "cuda")
    for precision, rounding in (("bf16", True), ("fp32", False)):
        cfg = load_config(None, base=tiny_config(tmp_path, demo_jsonl, train={"packing": True, "precision": precision}))
        train_ds, model, pad_id = load_prepared(cfg)
        trainer, _ = build_trainer(cfg, model, train_ds, out=tmp_path / precision, pad_id=pad_id, report=False)
        assert isinstance(trainer.data_collator, PackCollator) and trainer.data_collator.round_rows == rounding
    feats = [train_ds[i] for i in range(4)]
    real = sum(len(f["input_ids"]) for f in feats)
    batch = PackCollator(pad_id, round_rows=True)(feats)
    assert batch["input_ids"].numel() > real  # the demo's four rows do not add up to a multiple
    model.train()
    trainer.tokens_seen = 0
    trainer.compute_loss(model, dict(batch))
    assert trainer.tokens_seen == real


def test_packing_exactness_check_tells_exact_from_crossing_attention(setup):
    """The check training runs before it packs: True for the shipped architectures; False for a model that ignores
    position_ids (its packed row attends across examples), which makes 'auto' pad and an explicit true refuse."""
    from tunewise.config.schema import Config
    from tunewise.errors import ConfigError
    from tunewise.train.assemble import packing_for
    from tunewise.train.collate import packed_attention_is_exact

    model, _, _ = setup

    class DropsPositions(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, position_ids=None, use_cache=False):
            return self.inner(input_ids=input_ids, use_cache=use_cache)  # positions run on: one long example

    model.train()
    try:
        assert packed_attention_is_exact(model)  # run in eval mode (no dropout), the training mode put back
        assert model.training
    finally:
        model.eval()
    crossing = DropsPositions(model)
    assert not packed_attention_is_exact(crossing)
    assert packing_for(Config(), model) is True  # train.packing: auto, SFT, lora
    assert packing_for(Config(), crossing) is False
    with pytest.raises(ConfigError, match="attends across the examples") as e:
        packing_for(Config.model_validate({"train": {"packing": True}}), crossing)
    assert e.value.where == "train.packing"


@pytest.mark.parametrize("method,train,packs", [
    ({"name": "lora"}, {}, True),
    ({"name": "full"}, {"stage": "pretrain"}, True),
    ({"name": "prefix"}, {}, False),          # virtual tokens before every example
    ({"name": "prompt"}, {}, False),
    ({"name": "lora"}, {"stage": "dpo"}, False),   # chosen and rejected scored row by row
    ({"name": "lora"}, {"group_by_length": True}, False),  # padded buckets asked for
    ({"name": "lora"}, {"packing": False}, False),
    ({"name": "lora"}, {"packing": True, "group_by_length": True}, True),
])
def test_packing_auto_resolves_by_stage_and_method(method, train, packs):
    from tunewise import methods
    from tunewise.config.plan import packs as resolve
    from tunewise.config.schema import Config

    cfg = Config.model_validate({"method": method, "train": train})
    assert resolve(cfg) is packs
    if method["name"] in ("prefix", "prompt") or train.get("stage") == "dpo":
        methods.check_config(cfg)  # 'auto' is never refused where packing cannot go; only an explicit true is


def test_default_training_packs_its_batches(tmp_path, tiny_model_dirs, demo_jsonl):
    """With every setting at its default, training's collator is the packer (no padding, same steps), choosing per
    batch by the model's costs (train.packing: auto; tests/perf/test_packing_choice.py)."""
    from conftest import tiny_config

    from tunewise.config import load_config
    from tunewise.data.prepare import prepare
    from tunewise.models.load import tokenizer_and_template
    from tunewise.train.assemble import build_trainer, load_for_training
    from tunewise.train.data import encode_for_training

    raw = tiny_config(tmp_path, demo_jsonl)
    raw["train"].pop("packing", None)
    cfg = load_config(None, base=raw)
    assert cfg.train.packing == "auto"
    resolved, tok, tpl = tokenizer_and_template(cfg)
    train_ds, val_ds, _ = encode_for_training(cfg, tok, tpl, prepare(cfg, None))
    model = load_for_training(cfg, resolved, tokenizer=tok, template=tpl)
    trainer, _ = build_trainer(cfg, model, train_ds, val_ds, out=tmp_path / "o", pad_id=tok.pad_token_id, report=False)
    assert isinstance(trainer.data_collator, PackCollator) and trainer.data_collator.cost is not None
    # this 2-layer model's weights are so small that attention outweighs them and its batches pad; with weights of a
    # real model's size the packer packs them
    trainer.data_collator.cost.per_token *= 1e4  # weights of a real model's size: packing removes the padding
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch["input_ids"].shape[0] == 1 and "position_ids" in batch


def test_packed_training_runs_end_to_end(tmp_path, tiny_model_dirs, demo_jsonl):
    from conftest import read_metrics, tiny_config, write_config

    from tunewise.cli import main

    cfg = tiny_config(tmp_path, demo_jsonl, train={"packing": True, "max_steps": 4, "logging_steps": 1})
    assert main(["train", str(write_config(tmp_path / "c.yaml", cfg))]) == 0
    losses = [r["loss"] for r in read_metrics(tmp_path / "runs" / "t") if "loss" in r]
    assert len(losses) == 4 and all(x == x for x in losses)


def test_flush_denormals_is_scoped_and_flushes():
    from tunewise.train.trainer import flush_denormals

    tiny = torch.tensor([1e-39], dtype=torch.float32)  # a denormal float32
    assert float(tiny * 1.5) != 0.0
    with flush_denormals(True):
        assert float(tiny * 1.5) == 0.0
    assert float(tiny * 1.5) != 0.0  # the process default is back
    with flush_denormals(False):
        assert float(tiny * 1.5) != 0.0


def test_flush_denormals_reaches_every_thread():
    from tunewise.train.trainer import flush_denormals

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        big = torch.full((1 << 22,), 1e-39)  # large enough that each thread takes a share of the multiply
        with flush_denormals(True):
            assert bool(((big * 1.5) == 0).all())  # not just the calling thread's half
        assert bool(((big * 1.5) != 0).all())  # and every thread is back to the default after
    finally:
        torch.set_num_threads(threads)


def test_flush_denormal_training_matches_plain(tmp_path, tiny_model_dirs, demo_jsonl):
    from conftest import read_metrics, tiny_config, write_config

    from tunewise.cli import main

    losses = {}
    for flush in (True, False):
        root = tmp_path / str(flush)
        root.mkdir()
        cfg = tiny_config(root, demo_jsonl, train={"flush_denormal": flush, "max_steps": 3, "logging_steps": 1})
        assert main(["train", str(write_config(root / "c.yaml", cfg))]) == 0
        losses[flush] = [r["loss"] for r in read_metrics(root / "runs" / "t") if "loss" in r]
    assert len(losses[True]) == 3
    assert losses[True] == pytest.approx(losses[False], rel=1e-6)


@pytest.mark.parametrize("softcap", [None, 5.0])
@pytest.mark.parametrize("chunk", [3, 64])
def test_fused_linear_ce_matches_autograd(softcap, chunk):
    """Loss and the gradients of h, W and b equal plain autograd through logits and cross_entropy."""
    from tunewise.train.trainer import FusedLinearCE

    g = torch.Generator().manual_seed(0)
    h = torch.randn(10, 8, generator=g, dtype=torch.float64).float()
    w = torch.randn(50, 8, generator=g) * 2
    b = torch.randn(50, generator=g)
    y = torch.randint(0, 50, (10,), generator=g)
    ref_in = [t.clone().requires_grad_() for t in (h, w, b)]
    z = torch.nn.functional.linear(*ref_in)
    if softcap:
        z = torch.tanh(z / softcap) * softcap
    ref = torch.nn.functional.cross_entropy(z, y, reduction="sum")
    (ref * 0.5).backward()
    got_in = [t.clone().requires_grad_() for t in (h, w, b)]
    got = FusedLinearCE.apply(got_in[0], got_in[1], got_in[2], y, chunk, softcap)
    (got * 0.5).backward()
    torch.testing.assert_close(got, ref.detach(), rtol=1e-5, atol=1e-5)
    for r, o in zip(ref_in, got_in):
        torch.testing.assert_close(o.grad, r.grad, rtol=1e-4, atol=1e-5)
    with torch.no_grad():  # evaluation: the loss alone, no gradient buffers
        torch.testing.assert_close(FusedLinearCE.apply(h, w, b, y, chunk, softcap), ref.detach(), rtol=1e-5, atol=1e-5)


def test_fused_loss_only_for_a_plain_head(setup):
    """A head with an adapter of its own (LoRA on lm_head) takes the checkpointed chunk path, same loss."""
    from peft import LoraConfig, get_peft_model

    from tunewise.train.trainer import _fusable, causal_lm

    model, tok, feats = setup
    assert _fusable(model.get_output_embeddings())
    batch = PadCollator(tok.pad_token_id)(feats[:3])
    with torch.no_grad():
        ref_sum, n = _plain_loss_sum(model, batch)
    import copy

    peft = get_peft_model(copy.deepcopy(model), LoraConfig(r=2, target_modules=["lm_head"], init_lora_weights=True))
    assert not _fusable(causal_lm(peft).get_output_embeddings())
    loss = supervised_loss(peft, batch, chunk_size=4)
    assert float(loss.detach()) == pytest.approx(float(ref_sum) / n, rel=1e-5)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for k, p in peft.named_parameters() if "lora_" in k)
