"""The cost probe runs end to end on a tiny model (no timing is asserted: wall-clock belongs in benchmark files)."""

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
