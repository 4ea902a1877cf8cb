"""Reliability of the three methods: property-based forward / backward checks on degenerate point clouds, input
validation, and loading faults (corrupted, foreign or mismatched adapters) that must fail with a clear error and
leave the base model exactly as it was."""

from __future__ import annotations

import copy
import functools
import json
import math
import os
import shutil

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from peft import LoraConfig, PeftModel, get_peft_model
from tiny import no_dropout, tiny_gpt, tiny_transformer
from transformers import BertConfig, BertModel

import hf_point_peft  # noqa: F401
from hf_point_peft import (
    Any2PointConfig,
    PointGPTForClassification,
    PointGSTConfig,
    PointPromptConfig,
    PointTransformerForClassification,
    build_memory_bank,
)

# deterministic (derandomized, no example database) and small: the whole file runs in well under a minute
PROPERTY = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SLOW_PROPERTY = settings(PROPERTY, max_examples=12)  # Any2Point's 3D tokenizer is full size (768 wide) on CPU


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These models are small: on a busy 2-core machine one intra-op thread is several times faster than two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


GST = {"rank": 6, "local_size": 8, "init_weights": False}
PROMPT = {"num_prompt_tokens": 6, "bank_topk": 4, "ga_k": 4, "prompt_layers": 1}
A2P = {"num_labels": 3, "knn_k": 8, "num_views": 3, "init_weights": False}
BERT = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}
LABELS = {"gst": 5, "prompt": 5, "a2p": 3}
MIN_POINTS = {"gst": 16, "prompt": 16, "a2p": 512}  # max(num_groups, group_size) of TINY; Any2Point's first stage

# ------------------------------------------------------------------ clouds

KINDS = (
    "gaussian",
    "identical",  # every point the same
    "few_distinct",  # 1-4 distinct points, repeated
    "half_duplicates",  # the second half of the cloud copies points of the first half
    "collinear",
    "coplanar",
    "huge",  # 1e6 scale
    "far",  # unit cloud translated by 1e6: in float32 the points collapse onto a 1/16 grid, many duplicates
    "tiny",  # 1e-6 scale
)


def make_cloud(kind: str, n: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """One [n, 3] cloud of `kind`, built in float64 from `seed` and cast to `dtype`."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g, dtype=torch.float64)
    origin = torch.randn(1, 3, generator=g, dtype=torch.float64)
    if kind == "identical":
        x = origin.expand(n, 3)
    elif kind == "few_distinct":
        distinct = int(torch.randint(1, 5, (1,), generator=g))
        x = x[:distinct][torch.randint(distinct, (n,), generator=g)]
    elif kind == "half_duplicates":
        half = max(1, n // 2)
        x = torch.cat([x[:half], x[:half][torch.randint(half, (n - half,), generator=g)]])
    elif kind in ("collinear", "coplanar"):
        basis = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64)).Q  # a random orientation
        rank = 1 if kind == "collinear" else 2
        x = origin + torch.randn(n, rank, generator=g, dtype=torch.float64) @ basis[:, :rank].T
    elif kind == "huge":
        x = x * 1e6
    elif kind == "far":
        x = x + 1e6
    elif kind == "tiny":
        x = x * 1e-6
    return x.to(dtype).contiguous()


@st.composite
def point_batches(draw, method: str):
    """(kinds, points [B, N, 3]): B in 1..4, N from the model's minimum to about twice it, one kind per sample."""
    low = MIN_POINTS[method]
    batch = draw(st.integers(1, 4))
    n = draw(st.integers(low, 2 * low))
    kinds = draw(st.lists(st.sampled_from(KINDS), min_size=batch, max_size=batch))
    seed = draw(st.integers(0, 2**16))
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    points = torch.stack([make_cloud(kind, n, seed + i, dtype) for i, kind in enumerate(kinds)])
    return kinds, points


# ------------------------------------------------------------------ models (built once, state restored per example)


class Fixed:
    """A PEFT model and a copy of its initial state, restored before every example so that running statistics moved
    by one example (train mode) never leak into the next."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = no_dropout(model)
        self.state = copy.deepcopy(model.state_dict())

    def fresh(self) -> torch.nn.Module:
        self.model.load_state_dict(self.state)
        self.model.zero_grad(set_to_none=True)
        return self.model


def tiny_base(seed: int = 0, **kw) -> PointTransformerForClassification:
    torch.manual_seed(seed)
    return PointTransformerForClassification(tiny_transformer(**kw))


def tiny_bert(seed: int = 0, **kw) -> BertModel:
    torch.manual_seed(seed)
    return BertModel(BertConfig(**{**BERT, **kw}, vocab_size=100, max_position_embeddings=64), add_pooling_layer=False)


GST_VARIANTS = (
    {},
    {"distance_scale": "sample", "pairwise_distance": "exact", "laplacian": "combinatorial", "curve": "hilbert"},
    {"spectral_transform": "paper", "eigh_dtype": "float64"},
)
PROMPT_VARIANTS = ({"use_memory_bank": False}, {"bias_tuning": False})  # the second one with a memory bank
A2P_VARIANTS = (
    {},
    {"tokenizer_norm": "std", "pooling": "max_mean", "bn_over_empty_cells": False, "pe_injection": "input"},
)


@functools.cache
def gst_model(variant: int) -> Fixed:
    return Fixed(get_peft_model(tiny_base(), PointGSTConfig(**GST, **GST_VARIANTS[variant])))


@functools.cache
def prompt_model(variant: int) -> Fixed:
    config = PointPromptConfig(**PROMPT, **PROMPT_VARIANTS[variant])
    model = get_peft_model(tiny_base(), config)
    if config.use_memory_bank:
        build_memory_bank(model, [torch.randn(6, 128, 3, generator=torch.Generator().manual_seed(7))], num_points=128)
    return Fixed(model)


@functools.cache
def a2p_model(variant: int) -> Fixed:
    return Fixed(get_peft_model(tiny_bert(), Any2PointConfig(**A2P, **A2P_VARIANTS[variant])))


MODELS = {"gst": (gst_model, GST_VARIANTS), "prompt": (prompt_model, PROMPT_VARIANTS), "a2p": (a2p_model, A2P_VARIANTS)}


def check_finite_forward_and_backward(method: str, model: torch.nn.Module, kinds, points: torch.Tensor) -> None:
    batch = points.shape[0]
    where = f"{method} on kinds={kinds}, shape={tuple(points.shape)}, dtype={points.dtype}"
    model.eval()
    with torch.no_grad():
        logits = model(points=points).logits
    assert logits.shape == (batch, LABELS[method]), where
    assert torch.isfinite(logits).all(), f"non-finite eval logits: {where}"
    labels = torch.arange(batch) % LABELS[method]
    model.train()
    if batch == 1:
        # training-mode BatchNorm in the classification heads (as in the official heads) needs two samples
        with pytest.raises(ValueError, match="more than 1 value per channel"):
            model(points=points, labels=labels)
        return
    out = model(points=points, labels=labels)
    assert torch.isfinite(out.logits).all() and torch.isfinite(out.loss), f"non-finite train output: {where}"
    out.loss.backward()
    trainable = {name: p for name, p in model.named_parameters() if p.requires_grad}
    assert trainable, where
    missing = [name for name, p in trainable.items() if p.grad is None]
    assert not missing, f"trainable parameters without a gradient ({where}): {missing[:5]}"
    bad = [name for name, p in trainable.items() if not torch.isfinite(p.grad).all()]
    assert not bad, f"non-finite gradients ({where}): {bad[:5]}"


# ------------------------------------------------------------------ properties: degenerate geometry stays finite


@PROPERTY
@given(data=point_batches("gst"), variant=st.integers(0, len(GST_VARIANTS) - 1))
def test_point_gst_finite_on_any_cloud(data, variant):
    kinds, points = data
    check_finite_forward_and_backward("gst", gst_model(variant).fresh(), kinds, points)


@PROPERTY
@given(data=point_batches("prompt"), variant=st.integers(0, len(PROMPT_VARIANTS) - 1))
def test_point_prompt_finite_on_any_cloud(data, variant):
    kinds, points = data
    check_finite_forward_and_backward("prompt", prompt_model(variant).fresh(), kinds, points)


@SLOW_PROPERTY
@given(data=point_batches("a2p"), variant=st.integers(0, len(A2P_VARIANTS) - 1))
def test_any2point_finite_on_any_cloud(data, variant):
    kinds, points = data
    check_finite_forward_and_backward("a2p", a2p_model(variant).fresh(), kinds, points)


@pytest.mark.parametrize(
    "method, dtype",
    [("gst", torch.float32), ("gst", torch.float64), ("prompt", torch.float32), ("prompt", torch.float64)]
    + [("a2p", torch.float32)],  # (Any2Point's draws above include float64; its forward is the slow one)
)
def test_every_kind_in_one_batch(method, dtype):
    """The draws above are random; this pins every kind on every method, one sample each, in one batch."""
    points = torch.stack([make_cloud(kind, MIN_POINTS[method], seed, dtype) for seed, kind in enumerate(KINDS)])
    check_finite_forward_and_backward(method, MODELS[method][0](0).fresh(), list(KINDS), points)


# ------------------------------------------------------------------ input validation


@PROPERTY
@given(
    method=st.sampled_from(["gst", "prompt", "a2p"]),
    batch=st.integers(1, 4),
    data=st.data(),
    value=st.sampled_from([math.nan, math.inf, -math.inf]),
)
def test_nan_and_inf_points_name_the_first_bad_sample(method, batch, data, value):
    n = MIN_POINTS[method]
    bad = sorted(set(data.draw(st.lists(st.integers(0, batch - 1), min_size=1, max_size=batch))))
    points = make_cloud("gaussian", n, 0).expand(batch, n, 3).clone()
    for b in bad:
        points[b, data.draw(st.integers(0, n - 1)), data.draw(st.integers(0, 2))] = value
    model = MODELS[method][0](0).model.eval()
    with pytest.raises(ValueError, match=rf"first bad sample index is {bad[0]} \(shape \({batch}, {n}, 3\)\)"):
        model(points=points)


def _shape(shape) -> str:
    return rf"\({', '.join(str(s) for s in shape)},?\)"


@pytest.mark.parametrize("method", ["gst", "prompt", "a2p"])
def test_wrong_shapes_and_dtypes_raise_value_errors_naming_them(method):
    model = MODELS[method][0](0).model.eval()
    n = MIN_POINTS[method]
    cases = [
        (torch.randn(n, 3), "3-D.*" + _shape((n, 3))),
        (torch.randn(1, 2, n, 3), "3-D.*" + _shape((1, 2, n, 3))),
        (torch.randn(2, n, 2), "channels.*" + _shape((2, n, 2))),
        (torch.randn(2, n - 1, 3), f"{n - 1} points per sample.*" + _shape((2, n - 1, 3)) + f".*at least {n}"),
        (torch.randn(2, 0, 3), "0 points per sample"),
        (torch.randn(0, n, 3), "empty batch.*" + _shape((0, n, 3))),
        (torch.randint(0, 5, (2, n, 3)), "float tensor.*int64.*" + _shape((2, n, 3))),
        (torch.zeros(2, n, 3, dtype=torch.int32), "float tensor.*int32"),
        (torch.zeros(2, n, 3, dtype=torch.bool), "float tensor.*bool"),
        (torch.zeros(2, n, 3, dtype=torch.uint8), "float tensor.*uint8"),
        ([[0.0, 0.0, 0.0]] * n, "torch.Tensor.*list"),
    ]
    if method != "a2p":  # the point transformer takes exactly its configured channels; Any2Point ignores extra ones
        cases.append((torch.randn(2, n, 4), "must have 3 channels.*" + _shape((2, n, 4))))
    for points, match in cases:
        with pytest.raises(ValueError, match=match):
            model(points=points)


@pytest.mark.parametrize("method", ["gst", "prompt", "a2p"])
def test_float64_and_half_points_run_on_a_float32_model(method):
    """Points of another float dtype are cast to the weights' dtype (the transformers convention) instead of
    failing inside the first convolution with a dtype-mismatch RuntimeError."""
    model = MODELS[method][0](0).fresh().eval()
    points = make_cloud("gaussian", MIN_POINTS[method] * 2, 3).expand(2, -1, -1) * 0.5
    with torch.no_grad():
        reference = model(points=points.float()).logits
        torch.testing.assert_close(model(points=points.double()).logits, reference, atol=1e-4, rtol=1e-4)
        for dtype in (torch.float16, torch.bfloat16):
            logits = model(points=points.to(dtype)).logits
            assert logits.dtype == torch.float32 and torch.isfinite(logits).all(), dtype


def test_point_gpt_embeddings_cast_points_to_the_weights_dtype():
    torch.manual_seed(0)
    model = PointGPTForClassification(tiny_gpt(generator_num_hidden_layers=0)).eval()
    points = make_cloud("gaussian", 64, 0).expand(2, -1, -1)
    with torch.no_grad():
        torch.testing.assert_close(
            model(points=points.double()).logits, model(points=points.float()).logits, atol=1e-4, rtol=1e-4
        )


# ------------------------------------------------------------------ loading faults


def fingerprint(model: torch.nn.Module) -> dict:
    """Everything an adapter injection could leave behind on a base model."""
    return {
        "modules": [(name, type(m)) for name, m in model.named_modules()],
        "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "hooks": [(name, len(m._forward_hooks), len(m._forward_pre_hooks)) for name, m in model.named_modules()],
        "attributes": sorted(model.__dict__),
        "requires_grad": [(name, p.requires_grad) for name, p in model.named_parameters()],
    }


def assert_unchanged(model: torch.nn.Module, before: dict, points: torch.Tensor, output: torch.Tensor) -> None:
    after = fingerprint(model)
    for key in ("modules", "hooks", "attributes", "requires_grad"):
        assert after[key] == before[key], key
    assert after["state"].keys() == before["state"].keys()
    for key, value in before["state"].items():
        assert torch.equal(after["state"][key], value), key
    with torch.no_grad():
        assert torch.equal(model.eval()(points=points).logits, output)


def base_with_reference(factory, points):
    base = factory().eval()
    with torch.no_grad():
        output = base(points=points).logits.clone()
    return base, fingerprint(base), output


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Adapters saved from tiny width-48 bases: point transformers (PointGST, Point-PEFT without a bank, LoRA) and a
    BERT (Any2Point)."""
    root = tmp_path_factory.mktemp("adapters")
    get_peft_model(tiny_base(), PointGSTConfig(**GST)).save_pretrained(root / "gst")
    get_peft_model(tiny_base(), PointPromptConfig(**PROMPT, use_memory_bank=False)).save_pretrained(root / "prompt")
    get_peft_model(tiny_base(), LoraConfig(target_modules=["qkv"])).save_pretrained(root / "lora")
    get_peft_model(tiny_bert(hidden_size=48, intermediate_size=96), Any2PointConfig(**A2P)).save_pretrained(
        root / "a2p"
    )
    return root


POINTS = make_cloud("gaussian", 64, 11).expand(2, -1, -1).float()


def _truncate(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _garbage(data: bytes) -> bytes:
    return bytes(torch.randint(0, 256, (len(data),), generator=torch.Generator().manual_seed(0)).tolist())


def _header(data: bytes) -> bytes:  # random bytes over the start of the JSON header (after its 8-byte length)
    noise = bytes(torch.randint(0, 256, (32,), generator=torch.Generator().manual_seed(1)).tolist())
    return data[:8] + noise + data[40:]


def _header_length(data: bytes) -> bytes:  # a header length far beyond the file
    return (len(data) * 4).to_bytes(8, "little") + data[8:]


@pytest.mark.parametrize(
    "corrupt",
    [_truncate, _garbage, _header, _header_length, lambda data: b""],
    ids=["truncated", "garbage", "header", "length", "empty"],
)
def test_corrupted_weights_fail_clearly_and_leave_the_base_untouched(saved, tmp_path, corrupt):
    folder = tmp_path / "adapter"
    shutil.copytree(saved / "gst", folder)
    weights = folder / "adapter_model.safetensors"
    weights.write_bytes(corrupt(weights.read_bytes()))
    base, before, output = base_with_reference(lambda: tiny_base(seed=1), POINTS)
    with pytest.raises(ValueError, match=rf"{weights}.*truncated or corrupted"):
        PeftModel.from_pretrained(base, folder)
    assert_unchanged(base, before, POINTS, output)
    # the same file offered to an existing PEFT model as a second adapter: refused before anything is added
    model = PeftModel.from_pretrained(tiny_base(seed=1), saved / "gst").eval()
    modules = [(name, type(m)) for name, m in model.named_modules()]
    with torch.no_grad():
        adapted = model(points=POINTS).logits.clone()
    with pytest.raises(ValueError, match=rf"{weights}.*truncated or corrupted"):
        model.load_adapter(folder, adapter_name="second")
    assert list(model.peft_config) == ["default"]
    assert [(name, type(m)) for name, m in model.named_modules()] == modules
    with torch.no_grad():
        assert torch.equal(model(points=POINTS).logits, adapted)


def test_valid_adapter_still_loads_after_the_checks(saved):
    model = PeftModel.from_pretrained(tiny_base(seed=1), saved / "gst").eval()
    assert type(model.peft_config["default"]) is PointGSTConfig
    with torch.no_grad():
        assert torch.isfinite(model(points=POINTS).logits).all()


def test_config_of_another_method_over_pointgst_weights(saved, tmp_path):
    folder = tmp_path / "adapter"
    shutil.copytree(saved / "gst", folder)
    config = json.loads((folder / "adapter_config.json").read_text())
    config["peft_type"] = "POINT_PROMPT"
    (folder / "adapter_config.json").write_text(json.dumps(config))
    base, before, output = base_with_reference(lambda: tiny_base(seed=1), POINTS)
    # without the check this loaded silently (only a missing-keys warning) as a randomly initialised Point-PEFT adapter
    with (
        pytest.warns(UserWarning, match="Unexpected keyword arguments"),  # peft, about the PointGST fields
        pytest.raises(ValueError, match=r"adapter_model.safetensors hold no 'point_prompt_' tensor.*POINT_GST"),
    ):
        PeftModel.from_pretrained(base, folder)
    assert_unchanged(base, before, POINTS, output)


def test_lora_weights_under_a_pointgst_config(saved, tmp_path):
    folder = tmp_path / "adapter"
    shutil.copytree(saved / "gst", folder)
    shutil.copy(saved / "lora" / "adapter_model.safetensors", folder / "adapter_model.safetensors")
    base, before, output = base_with_reference(lambda: tiny_base(seed=1), POINTS)
    # without the check: a bare KeyError('base_model.model.point_transformer.cls_embedding.token') after injection
    with pytest.raises(ValueError, match=rf"{folder / 'adapter_model.safetensors'}.*'point_gst_'.*LORA.*lora_A"):
        PeftModel.from_pretrained(base, folder)
    assert_unchanged(base, before, POINTS, output)


def test_load_adapter_of_another_method_onto_a_pointgst_model(saved):
    model = PeftModel.from_pretrained(tiny_base(seed=1), saved / "gst").eval()
    modules = [(name, type(m)) for name, m in model.named_modules()]
    with torch.no_grad():
        adapted = model(points=POINTS).logits.clone()
    with pytest.raises(ValueError, match="Cannot combine adapters with different peft types.*POINT_GST.*POINT_PROMPT"):
        model.load_adapter(saved / "prompt", adapter_name="x")
    assert list(model.peft_config) == ["default"]
    assert [(name, type(m)) for name, m in model.named_modules()] == modules
    with torch.no_grad():
        assert torch.equal(model(points=POINTS).logits, adapted)


@pytest.mark.parametrize("method", ["gst", "prompt"])
def test_width_mismatch_names_both_widths_and_leaves_the_base_untouched(saved, method):
    name = {"gst": "PointGST", "prompt": "Point-PEFT"}[method]
    base, before, output = base_with_reference(lambda: tiny_base(seed=1, hidden_size=32, intermediate_size=64), POINTS)
    with pytest.raises(ValueError, match=rf"this {name} adapter was made for a base of width 48.*has width 32"):
        PeftModel.from_pretrained(base, saved / method)
    assert_unchanged(base, before, POINTS, output)


def test_any2point_width_mismatch_names_both_widths_and_leaves_the_source_untouched(saved):
    source = tiny_bert(seed=1).eval()  # width 32
    ids = torch.randint(3, 100, (2, 7), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        reference = source(input_ids=ids).last_hidden_state.clone()
    before = fingerprint(source)
    with pytest.raises(ValueError, match=r"made for a source of width 48, but this bert has width 32"):
        PeftModel.from_pretrained(source, saved / "a2p")
    after = fingerprint(source)
    # before the fix the source kept Any2Point's `forward` entry (an instance attribute) after the failed load
    assert "forward" not in source.__dict__
    assert {k: after[k] for k in ("modules", "hooks", "attributes", "requires_grad")} == {
        k: before[k] for k in ("modules", "hooks", "attributes", "requires_grad")
    }
    assert all(torch.equal(after["state"][k], v) for k, v in before["state"].items())
    with torch.no_grad():
        assert torch.equal(source(input_ids=ids).last_hidden_state, reference)


@pytest.mark.parametrize(
    "config",
    [
        PointGSTConfig(**GST, target_modules=["nothing"]),
        PointPromptConfig(**PROMPT, use_memory_bank=False, target_modules=["nothing"]),
        PointGSTConfig(**GST, layers_to_transform=[7]),
    ],
    ids=["gst", "prompt", "gst-layers"],
)
def test_targets_matching_no_block_raise_and_leave_the_base_untouched(config):
    """The tokenizer's BatchNorms always match, so before the check an adapter whose block pattern matched nothing
    was created silently (BatchNorm statistics only, no adapted block) and left the centres hook on the base."""
    base, before, output = base_with_reference(lambda: tiny_base(seed=1), POINTS)
    with pytest.raises(ValueError, match=r"matched no transformer block"):
        get_peft_model(base, config)
    assert_unchanged(base, before, POINTS, output)


def test_add_adapter_matching_no_block_leaves_no_trace():
    """peft rolls back only the refused adapter's config; its BatchNorm-statistics entries must go too."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    model = get_peft_model(tiny_base(seed=1), PointGSTConfig(**GST)).eval()
    with torch.no_grad():
        reference = model(points=POINTS).logits.clone()
    with pytest.raises(ValueError, match=r"matched no transformer block"):
        model.add_adapter("other", PointGSTConfig(**GST, target_modules=["nothing"]))
    assert "other" not in model.peft_config
    for module in model.modules():
        if isinstance(module, BaseTunerLayer):
            for attr in (*module.adapter_layer_names, *module.other_param_names):
                assert "other" not in getattr(module, attr, {}), (type(module).__name__, attr)
    assert not any(".other." in key or key.endswith(".other") for key in model.state_dict())
    with torch.no_grad():
        assert torch.equal(model(points=POINTS).logits, reference)


def test_any2point_refused_targets_leave_source_and_tuner_untouched():
    """Any2Point checks its layers before it creates the adapter's tokenizer, projections and head, and installs the
    point entry only after the injection: a refused get_peft_model or add_adapter leaves nothing behind."""
    source = tiny_bert(seed=1).eval()
    before = fingerprint(source)
    with pytest.raises(ValueError, match=r"Any2Point: target_modules=\['nothing'\].*matched no layer of BertModel"):
        get_peft_model(source, Any2PointConfig(**A2P, target_modules=["nothing"]))
    after = fingerprint(source)
    assert "forward" not in source.__dict__
    assert {k: after[k] for k in ("modules", "hooks", "attributes", "requires_grad")} == {
        k: before[k] for k in ("modules", "hooks", "attributes", "requires_grad")
    }
    model = get_peft_model(source, Any2PointConfig(**A2P))
    with pytest.raises(ValueError, match="matched no layer"):
        model.add_adapter("other", Any2PointConfig(**A2P, target_modules=["nothing"]))
    assert "other" not in model.peft_config
    tuner = model.base_model
    for attr in tuner.tuner_adapter_dicts:
        assert list(getattr(tuner, attr)) == ["default"], attr


def test_bad_block_norm_after_the_hook_is_installed_leaves_the_base_untouched():
    base, before, output = base_with_reference(lambda: tiny_base(seed=1), POINTS)
    with pytest.raises(ValueError, match="has no submodule 'ln_missing'"):
        get_peft_model(base, PointGSTConfig(**GST, block_norm="ln_missing"))
    assert_unchanged(base, before, POINTS, output)


def test_prompts_that_no_targeted_block_receives_are_refused():
    """prompt_layers=1 prompts block 0 only: targeting block 1 alone trained and saved prompt coordinates and a memory
    bank that no block read."""
    base, before, output = base_with_reference(lambda: tiny_base(seed=1), POINTS)
    with pytest.raises(
        ValueError, match=r"prompt_layers=1 gives prompts to blocks 0 .. 0, but the targeted blocks are \[1\]"
    ):
        get_peft_model(base, PointPromptConfig(**PROMPT, use_memory_bank=False, layers_to_transform=[1]))
    assert_unchanged(base, before, POINTS, output)
    model = get_peft_model(base, PointPromptConfig(**{**PROMPT, "prompt_layers": 2}, layers_to_transform=[1]))
    prompted = {name.split(".point_prompt_tokens.")[0] for name, _ in model.named_parameters() if "_tokens." in name}
    assert prompted == {"base_model.model.point_transformer.encoder.layers.1"}  # block 1: targeted and prompted


@pytest.mark.parametrize("first, second", [("gst", "prompt"), ("prompt", "gst")])
def test_a_second_method_on_the_same_base_names_the_adapter_already_there(first, second):
    """The second get_peft_model on one base met the first method's block wrapper and blamed block_norm."""
    configs = {
        "gst": lambda: PointGSTConfig(**GST),
        "prompt": lambda: PointPromptConfig(**PROMPT, use_memory_bank=False),
    }
    base = tiny_base(seed=1)
    get_peft_model(base, configs[first]())
    wrapper = {"gst": "PointGSTBlock", "prompt": "PointPromptBlock"}[first]
    with (
        pytest.warns(UserWarning),
        pytest.raises(ValueError, match=rf"is already a {wrapper}: this base model carries another method's adapter"),
    ):
        get_peft_model(base, configs[second]())


def test_config_only_folder_still_loads_as_a_config(tmp_path):
    """The weights check only runs when a weights file is there: a config saved on its own stays loadable."""
    PointGSTConfig(**GST).save_pretrained(tmp_path)
    assert not os.path.exists(tmp_path / "adapter_model.safetensors")
    config = PointGSTConfig.from_pretrained(tmp_path)
    assert isinstance(config, PointGSTConfig) and config.rank == GST["rank"]
