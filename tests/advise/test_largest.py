"""advise: the largest model of a family that each method fits in N GB (advise/largest.py, sizes.yaml)."""

import pytest

from tunewise.advise import largest as lg
from tunewise.train import memory as mem
from tunewise.hardware import cpu_only, with_gpus


def _shape(facts, batch):
    return mem.Shape(batch=batch, seq=512, supervised_share=0.8)


def test_families_are_found_by_model_id_or_path():
    assert lg.family_of("Qwen/Qwen2.5-1.5B-Instruct") == "qwen2.5"
    assert lg.family_of(None, "smollm2-135m-instruct") == "smollm2"
    assert lg.family_of("gemma3-270m") == "gemma-3"
    assert lg.family_of("meta-llama/Llama-3.2-1B") == "llama-3"
    assert lg.family_of("/models/my-own-net") is None


def test_every_size_builds_and_sizes_grow():
    for fam in lg.families():
        params = [lg.size_facts(fam, s).params for s in lg.families()[fam]["sizes"]]
        assert params == sorted(params), fam
    assert lg.size_facts("qwen2.5", "1.5B").params == pytest.approx(1.54e9, rel=0.02)  # the published count
    assert lg.size_facts("llama-3", "3.1-8B").params == pytest.approx(8.03e9, rel=0.02)


def test_the_largest_fitting_size_fits_and_the_next_does_not():
    mp = mem.MethodParams()
    sizes = list(lg.families()["qwen2.5"]["sizes"])
    for gib in (8, 16, 24):
        hw = cpu_only(ram_gib=gib, available_gib=gib)
        res = lg.largest("qwen2.5", hw, _shape, mp, 4)
        for m, c in res.items():
            if c is None:
                first = lg.size_facts("qwen2.5", sizes[0])
                assert mem.fit_batch(first, m, mp, _shape(first, 4), hw, 4) is None
                continue
            assert c["total_gib"] <= mem.FIT_SHARE * gib + 1e-2  # what must be free
            i = sizes.index(c["size"])
            if i + 1 < len(sizes):
                nxt = lg.size_facts("qwen2.5", sizes[i + 1])
                assert mem.fit_batch(nxt, m, mp, _shape(nxt, 4), hw, 4) is None, (gib, m, c)
    small = lg.largest("qwen2.5", cpu_only(ram_gib=8, available_gib=8), _shape, mp, 4)
    big = lg.largest("qwen2.5", cpu_only(ram_gib=24, available_gib=24), _shape, mp, 4)
    assert sizes.index(big["lora"]["size"]) > sizes.index(small["lora"]["size"])
    assert sizes.index(small["qlora"]["size"]) >= sizes.index(small["lora"]["size"])  # 4-bit weights go further


def test_budget_hardware_keeps_the_machine_kind():
    assert not lg.budget_hardware(cpu_only(ram_gib=64), 8).cuda
    gpu = lg.budget_hardware(with_gpus(80, count=2), 24)
    assert gpu.cuda and len(gpu.gpus) == 2 and gpu.gpus[0].memory_bytes == 24 * 2 ** 30


def test_qlora_on_a_cpu_counts_the_load_and_what_must_be_free(monkeypatch):
    """Measured by phase (bench/SWEEP.md): Qwen2.5-3B qlora peaked at 10.2 GB while loading (5.9 GB of it the
    checkpoint's page cache) and 4.1 GB training; with the pages released as the load goes, 4.2 GB loading."""
    mp, shape = mem.MethodParams(), mem.Shape(batch=4, seq=256, gradient_checkpointing=True)
    facts = lg.size_facts("qwen2.5", "3B")
    gpu = mem.estimate(facts, "qlora", mp, shape, with_gpus(80))
    assert gpu.loading == 0 and gpu.total == gpu.training == gpu.needed
    # where the pages cannot be released (not Linux), the whole file is resident until the load ends
    monkeypatch.setattr(mem, "PAGES_RELEASED_WHILE_LOADING", False)
    cpu = mem.estimate(facts, "qlora", mp, shape, cpu_only(ram_gib=64))
    assert cpu.reclaimable == facts.params * facts.source_dtype_bytes
    assert cpu.loading > cpu.training and cpu.total == cpu.loading
    assert cpu.needed == max(cpu.training, cpu.loading - cpu.reclaimable) < cpu.total
    assert cpu.training == cpu.weights + cpu.trainable + cpu.gradients + cpu.optimizer + cpu.activations + cpu.logits + cpu.overhead
    assert 9.0 * mem.GiB < cpu.total < 11.5 * mem.GiB and cpu.needed < 6 * mem.GiB
    # what must be free decides the fit: between the two, it fits
    tight = mem.estimate(facts, "qlora", mp, shape, cpu_only(ram_gib=8, available_gib=8))
    assert tight.fits and tight.needed <= mem.FIT_SHARE * tight.budget < tight.total
    # the loading peak does not turn checkpointing on (it is the same with or without): over half the budget
    # while loading, under half while training
    mid = mem.estimate(facts, "qlora", mp, shape, cpu_only(ram_gib=16, available_gib=16))
    assert mid.training < mem.AUTO_CHECKPOINT_SHARE * mid.budget < mid.total and not mem.checkpointing_pays(mid)
    # released as the load goes (Linux): no page cache in the peak, the load peak is what stays
    monkeypatch.setattr(mem, "PAGES_RELEASED_WHILE_LOADING", True)
    rel = mem.estimate(facts, "qlora", mp, shape, cpu_only(ram_gib=64))
    assert rel.reclaimable == 0 and rel.loading == cpu.loading - cpu.reclaimable and rel.needed == rel.total
    assert 3.5 * mem.GiB < rel.total < 5 * mem.GiB
    small = mem.estimate(lg.size_facts("qwen2.5", "0.5B"), "qlora", mp, mem.Shape(batch=4, seq=256), cpu_only(ram_gib=64))
    assert small.total == small.training > small.loading


def test_advise_prints_the_table_and_refuses_bad_budgets(tmp_path, demo_jsonl, tiny_model_dirs):
    from conftest import run_cli, tiny_config, write_config

    cfg = write_config(tmp_path / "c.yaml", tiny_config(tmp_path, demo_jsonl))
    code, out, err = run_cli("advise", str(cfg), "--family", "qwen2.5", "--budgets", "8,24")
    assert code == 0, err[-2000:]
    block = out[out.index("largest Qwen2.5 model"):]
    assert "here," in block and "\n  8 GiB: lora " in block and "\n  24 GiB: lora " in block
    code, out, err = run_cli("advise", str(cfg), "--family", "qwen2.5", "--budgets", "8,lots")
    assert code != 0 and "--budgets" in err and "8,16,24" in err and "Traceback" not in err
    code, out, err = run_cli("advise", str(cfg))  # a tiny model of no known family: no table
    assert code == 0 and "largest" not in out
