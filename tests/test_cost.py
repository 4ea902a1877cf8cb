"""The cost probe runs end to end on a tiny model (no timing is asserted: wall-clock belongs in benchmark files)."""

import statistics

import pytest
from tiny import TINY

from hf_point_peft.training.cost import CostSpec, measure_cost, measure_in_subprocess

TINY_MODEL = {k: v for k, v in TINY.items() if k not in ("num_groups", "num_points")}


def test_cost_probe_reports_every_figure():
    spec = CostSpec(
        method="pointgst",
        batch=2,
        num_points=128,
        num_groups=16,
        steps=1,
        warmup=1,
        inference_repeats=1,
        model_config=TINY_MODEL,
        method_options={"rank": 4, "local_size": 8},
    )
    result = measure_cost(spec)
    assert result["trainable_parameters"] > 0 and result["step_seconds"] > 0 and result["inference_seconds"] > 0
    assert 0 < result["context_build_share"] < 1  # PointGST builds its bases once per step
    full = measure_in_subprocess(CostSpec(**{**spec.__dict__, "method": "full", "method_options": {}}))
    assert full["context_build_seconds"] == 0 and full["peak_memory_bytes"] > 0
    assert full["trainable_parameters"] > result["trainable_parameters"]
    assert "MALLOC_MMAP_THRESHOLD_=65536" in full["peak_memory_kind"]
    # times from glibc's default allocator (an mmap per allocation slows steps down unevenly), memory from the
    # fixed threshold: two processes
    assert full["timing_allocator"] == "MALLOC_MMAP_THRESHOLD_=default"
    assert full["memory_allocator"] == "MALLOC_MMAP_THRESHOLD_=65536"
    assert full["inference_seconds"] > 0


def tiny_full_spec(batch: int) -> CostSpec:
    """Full fine-tuning of the tiny model, one warm-up and one timed step: the subprocess probes' spec."""
    return CostSpec(
        method="full",
        batch=batch,
        num_points=128,
        num_groups=16,
        steps=1,
        warmup=1,
        inference_repeats=1,
        model_config=TINY_MODEL,
    )


def test_cpu_times_never_come_from_a_fixed_mmap_threshold(monkeypatch):
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")  # the user's own setting is kept for memory only
    spec = tiny_full_spec(batch=4)
    result = measure_in_subprocess(spec)
    assert result["timing_allocator"] == "MALLOC_MMAP_THRESHOLD_=default"
    assert result["memory_allocator"] == "MALLOC_MMAP_THRESHOLD_=131072"
    assert "MALLOC_MMAP_THRESHOLD_=131072" in result["peak_memory_kind"]
    assert result["step_seconds"] > 0 and result["peak_memory_bytes"] > 0


TINY_SOURCE = {
    "model_type": "bert",
    "hidden_size": 48,
    "num_hidden_layers": 1,
    "num_attention_heads": 4,
    "intermediate_size": 96,
    "vocab_size": 32,
    "max_position_embeddings": 64,
    "model_kwargs": {"add_pooling_layer": False},
}


def test_cost_probe_any2point_against_full_pipeline():
    common = dict(
        batch=2,
        num_points=512,  # the Any2Point tokenizer's minimum
        num_labels=5,
        steps=1,
        warmup=0,
        inference_repeats=1,
        source_config=TINY_SOURCE,
        method_options={"knn_k": 8, "num_views": 2, "head_hidden": [16]},
    )
    full = measure_cost(CostSpec(method="any2point-full", **common))
    a2p = measure_cost(CostSpec(method="any2point", **common))
    for r in (a2p, full):
        assert r["step_seconds"] > 0 and r["inference_seconds"] > 0 and r["peak_memory_bytes"] > 0
        assert 0 < r["parameters_with_gradients"] <= r["trainable_parameters"] <= r["total_parameters"]
    # the same pipeline: every parameter of the Any2Point model trains in full fine-tuning, only the adapter otherwise
    assert full["total_parameters"] == a2p["total_parameters"] == full["trainable_parameters"]
    assert full["trainable_parameters"] > a2p["trainable_parameters"] == a2p["parameters_with_gradients"]
    # the source's encoder layers receive gradients in full fine-tuning (the position table, read under no_grad, not)
    assert full["parameters_with_gradients"] > a2p["parameters_with_gradients"]


@pytest.mark.slow  # end to end: whole runs in fresh processes
def test_cpu_peak_memory_is_the_probes_own_not_its_parents():
    """A probe started by a big process (the benchmark, after training) reports its own peak: Linux carries a parent's
    resident size into a child's ru_maxrss, so the probe must read (and reset) VmHWM instead."""
    spec = tiny_full_spec(batch=8)
    alone = measure_in_subprocess(spec)
    ballast = bytearray(1 << 30)  # 1 GiB resident in the parent
    for i in range(0, len(ballast), 4096):
        ballast[i] = 1
    beside_a_big_parent = measure_in_subprocess(spec)
    del ballast
    assert alone["peak_memory_exact"] and beside_a_big_parent["peak_memory_exact"]
    assert beside_a_big_parent["peak_memory_bytes"] < alone["peak_memory_bytes"] + (64 << 20)
    assert alone["peak_memory_bytes"] < 512 << 20  # a tiny model's step, not an inherited gigabyte


def test_costs_measured_together_interleave_rounds_and_the_control_is_checked():
    """Every method's timing probe runs once per round, round-robin, each in a fresh process; the figures are the
    medians with every round kept, and the linear probe's inference (full fine-tuning's forward) is the control."""
    from hf_point_peft.training.benchmark import cost_control
    from hf_point_peft.training.cost import measure_together

    base = {**tiny_full_spec(2).__dict__, "warmup": 0, "inference_repeats": 1}
    specs = {"full": CostSpec(**base), "linear": CostSpec(**{**base, "method": "linear"})}
    costs = measure_together(specs, rounds=2)
    for name in specs:
        assert costs[name]["rounds"] == 2 and len(costs[name]["step_seconds_rounds"]) == 2
        assert costs[name]["step_seconds"] == statistics.median(costs[name]["step_seconds_rounds"])
        assert costs[name]["peak_memory_bytes"] > 0
    control = cost_control(costs)
    expected = costs["linear"]["inference_seconds"] / costs["full"]["inference_seconds"]
    assert control["ratio"] == expected and control["reliable"] == (abs(expected - 1) <= 0.10)
    # the verdict itself, on figures where it is known
    assert cost_control({"full": {"inference_seconds": 1.0}, "linear": {"inference_seconds": 1.05}})["reliable"]
    off = cost_control({"full": {"inference_seconds": 1.0}, "linear": {"inference_seconds": 0.37}})
    assert off["reliable"] is False and f"{off['ratio']:.2f}" == "0.37"
    with pytest.raises(ValueError, match="rounds must be >= 1"):
        measure_together(specs, rounds=0)
