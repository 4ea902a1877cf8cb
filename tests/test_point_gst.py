"""PointGST as a peft method: identity at init, training isolation, counts, I/O, multi-adapter, fidelity switches,
degenerate geometry and clear errors."""

from __future__ import annotations

import copy
import itertools
import json
import pickle
import subprocess
import sys
import textwrap

import pytest
import torch
from peft import PeftConfig, PeftModel, get_peft_model
from safetensors.torch import load_file
from tiny import n_params, no_dropout, points, tiny_gpt, tiny_transformer

import hf_point_peft  # noqa: F401
from hf_point_peft import (
    PointGPTConfig,
    PointGPTForClassification,
    PointGSTConfig,
    PointTransformerConfig,
    PointTransformerForClassification,
)
from hf_point_peft.geometry.spectral import GraphBases, adjacency, graph_bases, pairwise_distances
from hf_point_peft.tuners.point_gst import PointGSTBatchNorm, PointGSTBlock, SpectralAdapter

GST = {"rank": 6, "local_size": 8}


def peft_model(cls=PointTransformerForClassification, factory=tiny_transformer, seed=0, **cfg):
    torch.manual_seed(seed)
    base = cls(factory())
    return get_peft_model(base, PointGSTConfig(**{**GST, **cfg}))


def train_steps(model, steps=3, lr=1e-2, seed=0):
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(4, 128, 3, generator=gen)
        y = torch.randint(0, 5, (4,), generator=gen)
        loss = model(points=x, labels=y).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model


# ------------------------------------------------------------------ identity, disable, isolation


@pytest.mark.parametrize(
    "cls, factory", [(PointTransformerForClassification, tiny_transformer), (PointGPTForClassification, tiny_gpt)]
)
def test_identity_at_init_and_disable_after_training(cls, factory):
    torch.manual_seed(0)
    base = cls(factory()).eval()
    x = points()
    with torch.no_grad():
        reference = base(points=x).logits.clone()
    base_state = {k: v.clone() for k, v in base.state_dict().items()}
    model = get_peft_model(base, PointGSTConfig(**GST)).eval()
    with torch.no_grad():
        assert torch.equal(model(points=x).logits, reference)
    no_dropout(model)
    train_steps(model)
    model.eval()
    with torch.no_grad():
        adapted = model(points=x).logits
        with model.disable_adapter():
            disabled = model(points=x).logits
    assert not torch.allclose(adapted, reference)
    assert torch.equal(disabled, reference)
    # the base model's own weights and BatchNorm statistics never changed
    for key, value in model.get_base_model().state_dict().items():
        plain = key.replace(".base_layer", "")
        if plain in base_state and "point_gst" not in key and "modules_to_save" not in key:
            assert torch.equal(value, base_state[plain]), key


def test_only_adapter_and_saved_modules_change():
    model = no_dropout(peft_model())
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    buffers_before = {n: b.clone() for n, b in model.named_buffers()}
    train_steps(model)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed, "training changed nothing"
    for name in changed:
        assert "point_gst_" in name or "modules_to_save" in name, name
    assert any("point_gst_adapter" in n for n in changed) and any("modules_to_save" in n for n in changed)
    # frozen BN statistics: only the adapter's copies (and the trained head's own BNs) move
    moved = {n for n, b in model.named_buffers() if not torch.equal(b, buffers_before[n])}
    assert any("point_gst_bn_running_mean" in n for n in moved)
    for name in moved:
        assert "point_gst_bn_" in name or "modules_to_save" in name, name


def test_frozen_bn_stats_mode_uses_base_statistics():
    model = no_dropout(peft_model(backbone_bn_stats="frozen"))
    stats = {n: b.clone() for n, b in model.named_buffers() if "running_mean" in n and "modules_to_save" not in n}
    train_steps(model)
    for name, value in model.named_buffers():
        if name in stats:
            assert torch.equal(value, stats[name]), name


# ------------------------------------------------------------------ counts


def test_pcsa_count_formula():
    for width, expected in ((384, 29_544), (1024, 76_264)):
        adapter = SpectralAdapter(width, 36, "official")
        assert n_params(adapter) == expected == 2 * width * 36 + width + 36 * 36 + 6 * 36


@pytest.mark.parametrize(
    "num_labels, modules_to_save, expected",
    [(15, None, 622_831), (40, None, 629_256), (15, ["classifier"], 622_063)],
)
def test_point_mae_size_trainable_counts(num_labels, modules_to_save, expected):
    with torch.device("meta"):
        base = PointTransformerForClassification(PointTransformerConfig(num_labels=num_labels))
        model = get_peft_model(base, PointGSTConfig(modules_to_save=modules_to_save))
    trainable, _ = model.get_nb_trainable_parameters()
    assert trainable == expected
    blocks = [m for m in model.modules() if isinstance(m, PointGSTBlock)]
    assert len(blocks) == 12 and all(n_params(b.point_gst_adapter) == 29_544 for b in blocks)


def test_pointgpt_l_trainable_count():
    with torch.device("meta"):
        base = PointGPTForClassification(PointGPTConfig.from_size("L", num_labels=15, generator_num_hidden_layers=0))
        model = get_peft_model(base, PointGSTConfig())
    assert model.get_nb_trainable_parameters()[0] == 2_429_647
    assert model.peft_config["default"].num_prefix_tokens == 2


# ------------------------------------------------------------------ save / load / pickle / multi-adapter


def test_saved_adapter_holds_only_adapter_tensors(tmp_path):
    model = train_steps(no_dropout(peft_model()))
    model.save_pretrained(tmp_path)
    tensors = load_file(tmp_path / "adapter_model.safetensors")
    assert tensors
    for key in tensors:
        assert "point_gst_" in key or "classifier" in key or "cls_embedding" in key, key
        assert "base_layer" not in key and "basis" not in key and "centres" not in key
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    saved_params = sum(t.numel() for k, t in tensors.items() if "running" not in k and "num_batches" not in k)
    assert saved_params == model.get_nb_trainable_parameters()[0]
    assert not any(key in frozen for key in tensors)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["peft_type"] == "POINT_GST" and config["base_hidden_size"] == 48
    assert config["target_modules"] and config["modules_to_save"] == ["classifier", "cls_embedding"]


def test_save_load_in_fresh_process(tmp_path):
    torch.manual_seed(0)
    base = PointTransformerForClassification(tiny_transformer())
    base.save_pretrained(tmp_path / "base")
    model = get_peft_model(PointTransformerForClassification.from_pretrained(tmp_path / "base"), PointGSTConfig(**GST))
    train_steps(no_dropout(model))
    model.eval()
    x = points(seed=4)
    torch.save(x, tmp_path / "x.pt")
    with torch.no_grad():
        expected = model(points=x).logits
    model.save_pretrained(tmp_path / "adapter")
    script = textwrap.dedent(
        f"""
        import torch
        import hf_point_peft
        from peft import PeftModel, AutoPeftModel
        from hf_point_peft import PointTransformerForClassification
        base = PointTransformerForClassification.from_pretrained({str(tmp_path / "base")!r})
        model = PeftModel.from_pretrained(base, {str(tmp_path / "adapter")!r}).eval()
        x = torch.load({str(tmp_path / "x.pt")!r})
        with torch.no_grad():
            torch.save(model(points=x).logits, {str(tmp_path / "out.pt")!r})
            auto = AutoPeftModel.from_pretrained({str(tmp_path / "adapter")!r}, import_allowlist=["hf_point_peft"])
            torch.save(auto.eval()(points=x).logits, {str(tmp_path / "auto.pt")!r})
        """
    )
    # a local base is recorded by its folder name (never a path of this machine): AutoPeftModel finds it from the
    # folder that holds it
    assert json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["base_model_name_or_path"] == "base"
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True, cwd=tmp_path)
    assert torch.equal(torch.load(tmp_path / "out.pt"), expected)
    assert torch.equal(torch.load(tmp_path / "auto.pt"), expected)
    assert isinstance(PeftConfig.from_pretrained(tmp_path / "adapter"), PointGSTConfig)


def test_two_adapters_switch_and_delete(tmp_path):
    torch.manual_seed(0)
    base = PointTransformerForClassification(tiny_transformer()).eval()
    base.save_pretrained(tmp_path / "base")
    x = points()
    with torch.no_grad():
        reference = base(points=x).logits.clone()
    model = get_peft_model(base, PointGSTConfig(**GST, init_weights=False), adapter_name="task_a")
    model.add_adapter("task_b", PointGSTConfig(**{**GST, "rank": 4}, init_weights=False))
    model.eval()
    with torch.no_grad():
        out_a = model(points=x).logits
        model.set_adapter("task_b")
        out_b = model(points=x).logits
        model.set_adapter("task_a")
        assert torch.equal(model(points=x).logits, out_a)
    assert not torch.allclose(out_a, out_b)
    # only the active adapter trains
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any(".task_a." in n for n in trainable) and not any(".task_b." in n for n in trainable)
    model.save_pretrained(tmp_path / "adapters")
    assert (tmp_path / "adapters" / "task_b" / "adapter_model.safetensors").is_file()
    model.delete_adapter("task_a")
    assert model.active_adapters == ["task_b"]
    with torch.no_grad():
        assert torch.equal(model(points=x).logits, out_b)
    assert not any(".task_a." in n for n, _ in model.named_parameters())
    model.delete_adapter("task_b")  # the last one: as with LoRA, the wrapped layers now pass through
    with torch.no_grad():
        assert torch.equal(model.base_model.model(points=x).logits, reference)
    assert not any(len(m._forward_hooks) for m in model.modules())
    # reload both adapters into a fresh PeftModel over the same base weights
    fresh_base = PointTransformerForClassification.from_pretrained(tmp_path / "base")
    fresh = PeftModel.from_pretrained(fresh_base, tmp_path / "adapters" / "task_a", adapter_name="task_a")
    fresh.load_adapter(tmp_path / "adapters" / "task_b", adapter_name="task_b")
    fresh.eval()
    with torch.no_grad():
        assert torch.equal(fresh(points=x).logits, out_a)
        fresh.set_adapter("task_b")
        assert torch.equal(fresh(points=x).logits, out_b)


def test_pickle_and_deepcopy():
    model = train_steps(no_dropout(peft_model(init_weights=False))).eval()
    x = points()
    with torch.no_grad():
        expected = model(points=x).logits
        for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
            assert torch.equal(clone(points=x).logits, expected)


@pytest.mark.parametrize("reentrant", [False, True])
@pytest.mark.parametrize(
    "cls, factory", [(PointTransformerForClassification, tiny_transformer), (PointGPTForClassification, tiny_gpt)]
)
def test_gradient_checkpointing_same_gradients(cls, factory, reentrant):
    factory_kw = {"generator_num_hidden_layers": 0} if factory is tiny_gpt else {"drop_path_rate": 0.0}
    torch.manual_seed(0)
    model = get_peft_model(cls(factory(**factory_kw)), PointGSTConfig(**GST, init_weights=False))
    no_dropout(model).train()
    x, y = points(), torch.tensor([0, 1, 2])

    def grads():
        model.zero_grad()
        model(points=x, labels=y).loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain = grads()
    model.get_base_model().activation_checkpointing_enable({"use_reentrant": reentrant})
    if reentrant:
        model.get_base_model().enable_input_require_grads()
    checkpointed = grads()
    assert plain.keys() == checkpointed.keys() and any("point_gst_adapter" in n for n in plain)
    for name in plain:
        torch.testing.assert_close(plain[name], checkpointed[name], atol=1e-6, rtol=1e-5, msg=name)


# ------------------------------------------------------------------ per-forward geometry


def _geometries(model) -> list:
    """Record the `point_geometry` every PointGST block is called with (a test-only pre-hook)."""
    seen = []
    for block in (m for m in model.modules() if isinstance(m, PointGSTBlock)):
        block.register_forward_pre_hook(lambda m, a, kw: seen.append(kw.get("point_geometry")), with_kwargs=True)
    return seen


def test_bases_built_once_per_forward_per_setting():
    # several active adapters at once: peft allows that only without modules_to_save
    model = peft_model(init_weights=False, modules_to_save=[])
    model.add_adapter("same", PointGSTConfig(**GST, modules_to_save=[]))
    model.add_adapter("other", PointGSTConfig(**GST, laplacian="combinatorial", modules_to_save=[]))
    seen = _geometries(model)
    model.eval()
    with torch.no_grad():
        model.base_model.set_adapter(["default", "same"])
        model(points=points())
        assert len(seen) == 2 and seen[0] is seen[1]  # one geometry per forward, handed to every block
        assert seen[0].builds == 1  # two adapters, one graph setting, two blocks
        model.base_model.set_adapter(["default", "same", "other"])
        model(points=points())
        assert seen[2] is not seen[0] and seen[2].builds == 2  # a fresh geometry for the next forward
        with model.disable_adapter():
            model(points=points())
        assert seen[4].builds == 0


def test_the_encoder_passes_the_forward_geometry_and_no_hook_is_installed():
    model = peft_model(init_weights=False)
    assert not any(len(m._forward_hooks) or len(m._forward_pre_hooks) for m in model.modules())
    seen = _geometries(model)
    x = points()
    with torch.no_grad():
        centres = model.eval()(points=x).centres
    assert len(seen) == 2 and seen[0] is seen[1]
    assert torch.equal(seen[0].points, x) and torch.equal(seen[0].centres, centres)


def test_concurrent_forwards_in_threads_do_not_share_geometry():
    """Each call has its own geometry: forwards of different clouds running at once in threads (as DataParallel's
    replicas or a serving thread pool do) give what each gives alone."""
    from concurrent.futures import ThreadPoolExecutor

    model = peft_model(init_weights=False).eval()
    clouds = [points(seed=s) for s in range(6)]
    with torch.no_grad():
        alone = [model(points=x).logits for x in clouds]

        def run(x):
            with torch.no_grad():  # grad mode is per thread
                return model(points=x).logits

        with ThreadPoolExecutor(max_workers=3) as pool:
            together = list(pool.map(run, clouds * 3))
    for i, out in enumerate(together):
        assert torch.equal(out, alone[i % len(clouds)]), i


def test_a_block_called_without_geometry_says_what_the_encoder_must_pass():
    model = peft_model(init_weights=False).eval()
    block = next(m for m in model.modules() if isinstance(m, PointGSTBlock))
    with pytest.raises(ValueError, match=r"point_geometry=PointGeometry\(points, centres\)"):
        block(torch.randn(2, 17, block.width))


# ------------------------------------------------------------------ fidelity switches


def _layer_inputs(groups=16, k=8, batch=2, rank=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(batch, groups, 3, generator=g)
    tokens = torch.randn(batch, 1 + groups, 24, generator=g)
    return centres, tokens


@pytest.mark.parametrize("transform, equivariant", [("paper", True), ("official", False)])
def test_paper_transform_is_permutation_equivariant(transform, equivariant):
    torch.manual_seed(0)
    adapter = SpectralAdapter(24, 6, transform, init_weights=False).double()
    centres, tokens = _layer_inputs()
    tokens = tokens.double()
    bases = graph_bases(centres, local_size=8, distance="exact", eigh_dtype=torch.float64)
    sigma = torch.randperm(16, generator=torch.Generator().manual_seed(1))
    perm_centres = centres[:, sigma]
    permuted = graph_bases(perm_centres, local_size=8, distance="exact", eigh_dtype=torch.float64)
    # the same local graphs in the same curve order: the local branch sees identical chunks
    assert torch.equal(
        perm_centres.gather(1, permuted.perm[..., None].expand(-1, -1, 3)),
        centres.gather(1, bases.perm[..., None].expand(-1, -1, 3)),
    )
    # an eigenbasis of the permuted graph: the permuted rows of the original one (fixes eigh's sign freedom)
    moved = GraphBases(bases.global_basis[:, sigma], bases.local_basis, permuted.perm, permuted.inv)
    out = adapter(tokens, bases, 1)
    out_perm = adapter(torch.cat([tokens[:, :1], tokens[:, 1:][:, sigma]], dim=1), moved, 1)
    same = torch.allclose(out_perm[:, 1:], out[:, 1:][:, sigma], atol=1e-10)
    assert same is equivariant
    torch.testing.assert_close(out_perm[:, 0], out[:, 0])  # the cls token sees no graph


def test_distance_scale_sample_vs_batch():
    x = points(batch=4)
    x[3] *= 5.0  # a sample of another scale changes the batch-global m
    for scale, independent in (("sample", True), ("batch", False)):
        model = peft_model(init_weights=False, distance_scale=scale).eval()
        with torch.no_grad():
            full = model(points=x).logits
            alone = model(points=x[:1]).logits
        assert torch.allclose(full[:1], alone, atol=1e-5) is independent, scale


def test_batch_scale_is_the_official_global_minimum():
    d = pairwise_distances(torch.rand(3, 10, 3, generator=torch.Generator().manual_seed(0)), "exact")
    m = d[d > 0].min()
    torch.testing.assert_close(adjacency(d, "batch"), 1.0 / (d / m + torch.eye(10)), atol=0, rtol=0)
    per_sample = torch.stack([1.0 / (d[b] / d[b][d[b] > 0].min() + torch.eye(10)) for b in range(3)])
    torch.testing.assert_close(adjacency(d, "sample"), per_sample, atol=0, rtol=0)


def test_official_cdist_diagonal_round_off_sets_m():
    """Pitfall 3: torch.cdist's matmul path leaves positive diagonals for > 25 points; "cdist" keeps that, "exact"
    gives the intended graph."""
    c = torch.rand(8, 128, 3, generator=torch.Generator().manual_seed(0)) * 2 - 1
    diag = pairwise_distances(c, "cdist").diagonal(dim1=-2, dim2=-1)
    exact = pairwise_distances(c, "exact")
    assert (exact.diagonal(dim1=-2, dim2=-1) == 0).all()
    if (diag > 0).any():  # BLAS-dependent: then m comes from round-off, far below the true nearest distance
        d = pairwise_distances(c, "cdist")
        assert d[d > 0].min() < 0.1 * exact[exact > 0].min()


def test_degenerate_clamp_is_bit_identical_on_regular_input():
    d = pairwise_distances(torch.rand(2, 12, 3, generator=torch.Generator().manual_seed(2)), "exact")
    m = d[d > 0].min()
    assert torch.equal(adjacency(d, "batch", 1e-6), 1.0 / (d / m + torch.eye(12)))


def _all_switches():
    names = ["spectral_transform", "distance_scale", "pairwise_distance", "laplacian", "curve", "eigh_dtype"]
    choices = [
        ("official", "paper"),
        ("batch", "sample"),
        ("cdist", "exact"),
        ("normalized", "combinatorial"),
        ("z-order", "hilbert"),
        ("float32", "float64"),
    ]
    return [dict(zip(names, combo)) for combo in itertools.product(*choices)]


@pytest.mark.parametrize("case", ["duplicates", "identical", "single"])
def test_degenerate_geometry_finite_under_every_switch(case):
    g = torch.Generator().manual_seed(0)
    if case == "duplicates":
        x = torch.randn(2, 8, 3, generator=g).repeat_interleave(16, dim=1)  # 8 distinct points, 16 copies each
    elif case == "identical":
        x = torch.full((2, 128, 3), 0.25)
    else:
        x = torch.randn(1, 128, 3, generator=g)
    y = torch.zeros(x.shape[0], dtype=torch.long)
    torch.manual_seed(0)
    base = PointTransformerForClassification(tiny_transformer())
    model = get_peft_model(base, PointGSTConfig(**GST, init_weights=False))
    for i, switches in enumerate(_all_switches()):
        model.add_adapter(f"a{i}", PointGSTConfig(**GST, init_weights=False, **switches))
    model.eval()  # BatchNorm of the head in eval: a batch of one is valid
    for i in range(len(_all_switches())):
        model.set_adapter(f"a{i}")
        model.zero_grad()
        out = model(points=x, labels=y)
        out.loss.backward()
        assert torch.isfinite(out.logits).all(), (case, _all_switches()[i])
        grads = [p.grad for n, p in model.named_parameters() if p.grad is not None and f".a{i}." in n]
        assert grads and all(torch.isfinite(gr).all() for gr in grads), (case, _all_switches()[i])


def test_bases_finite_with_duplicate_centres():
    c = torch.zeros(2, 16, 3)
    c[0, 8:] = 1.0
    for distance, scale in itertools.product(("cdist", "exact"), ("batch", "sample")):
        b = graph_bases(c, local_size=8, distance=distance, scale=scale)
        assert torch.isfinite(b.global_basis).all() and torch.isfinite(b.local_basis).all()


# ------------------------------------------------------------------ errors


def test_merge_and_unload_refused_before_touching_layers():
    model = peft_model()
    blocks_before = [type(m) for m in model.modules()]
    with pytest.raises(ValueError, match="unload\\(\\)"):
        model.merge_and_unload()
    with pytest.raises(ValueError, match="cannot be merged"):
        model.merge_adapter()
    assert [type(m) for m in model.modules()] == blocks_before


def test_unload_restores_base_and_removes_hook():
    torch.manual_seed(0)
    base = PointTransformerForClassification(tiny_transformer()).eval()
    x = points()
    with torch.no_grad():
        reference = base(points=x).logits.clone()
    model = get_peft_model(base, PointGSTConfig(**GST, init_weights=False))
    restored = model.unload()
    assert not any(isinstance(m, (PointGSTBlock, PointGSTBatchNorm)) for m in restored.modules())
    assert not any(len(m._forward_hooks) for m in restored.modules())
    with torch.no_grad():
        assert torch.equal(restored.eval()(points=x).logits, reference)


def test_width_mismatch_names_both_widths(tmp_path):
    peft_model().save_pretrained(tmp_path)
    narrow = PointTransformerForClassification(tiny_transformer(hidden_size=24, intermediate_size=48))
    with pytest.raises(ValueError, match="width 48.*width 24"):
        PeftModel.from_pretrained(narrow, tmp_path)


def test_groups_not_multiple_of_local_size():
    model = peft_model(local_size=6)
    with pytest.raises(ValueError, match=r"G \(16\).*local_size k \(6\)"):
        model(points=points())


def test_nan_points_and_unknown_backbone():
    model = peft_model()
    bad = points()
    bad[2, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="first bad sample index is 2"):
        model(points=bad)

    class Other(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(3, 3)

    with pytest.raises(ValueError, match="point_gpt.*point_transformer|knows the model types"):
        get_peft_model(Other(), PointGSTConfig())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"rank": 0}, "rank"),
        ({"curve": "peano"}, "curve"),
        ({"distance_scale": "global"}, "distance_scale"),
        ({"backbone_bn_stats": "train"}, "backbone_bn_stats"),
        ({"task_type": "SEQ_CLS"}, "task_type"),
    ],
)
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PointGSTConfig(**kwargs)


def test_layers_to_transform_and_explicit_targets():
    model = peft_model(layers_to_transform=[1])
    blocks = [n for n, m in model.named_modules() if isinstance(m, PointGSTBlock)]
    assert blocks == ["base_model.model.point_transformer.encoder.layers.1"]
    explicit = peft_model(target_modules=["point_transformer.encoder.layers.0"])
    assert [n for n, m in explicit.named_modules() if isinstance(m, PointGSTBlock)] == [
        "base_model.model.point_transformer.encoder.layers.0"
    ]
