"""Point-PEFT as a peft method: counts, memory bank, disable, isolation, save/load, batch independence, the kNN fix."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
from peft import get_peft_model
from safetensors.torch import load_file
from tiny import no_dropout, points, tiny_gpt, tiny_transformer

import hf_point_peft  # noqa: F401
from hf_point_peft import (
    PointGPTForClassification,
    PointPromptConfig,
    PointTransformerConfig,
    PointTransformerForClassification,
    build_memory_bank,
)
from hf_point_peft.data import make_synthetic_shapes
from hf_point_peft.geometry import gather_points
from hf_point_peft.tuners.point_prompt.layer import PointPromptBlock, bank_prompt_input, build_graph

SMALL = {"num_prompt_tokens": 6, "bank_topk": 4, "ga_k": 4, "prompt_layers": 1}


@pytest.fixture(scope="module")
def data():
    return make_synthetic_shapes(train_per_class=2, test_per_class=1, num_points=160, seed=0)


def prompt_model(cls=PointTransformerForClassification, factory=tiny_transformer, seed=0, **cfg):
    torch.manual_seed(seed)
    return get_peft_model(cls(factory(num_labels=15)), PointPromptConfig(**{**SMALL, **cfg}))


def with_bank(data, **kw):
    model = prompt_model(**kw)
    build_memory_bank(model, data["train"], num_points=128)
    return model


def train_steps(model, steps=3, seed=0):
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        loss = model(
            points=torch.randn(4, 128, 3, generator=gen), labels=torch.randint(0, 15, (4,), generator=gen)
        ).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model


# ------------------------------------------------------------------ counts


def closed_form_count(
    c=384, blocks=12, prompted=6, tokens=10, cp=8, mlp=16, out=16, inter=1536, a=18, labels=15, bias=True, bank=True
):
    bottleneck = lambda r: 2 * c * r + r + c  # noqa: E731
    head = 2 * c * 256 + 256 + 2 * 256 + 256 * 256 + 256 + 2 * 256 + 256 * labels + labels
    total = prompted * tokens * c + (prompted * bottleneck(cp) if bank else 0)
    total += blocks * (bottleneck(mlp) + bottleneck(out) + 2 * c)
    total += (blocks * (3 * c + inter + c) + 2 * c) if bias else 0  # proj, fc1, fc2, norm1, norm2 + final norm
    total += 3 * c * a + a * c + c + 2 * c  # local attention (qkv without bias) + LN3
    return total + tokens * 3 + 2 * c + head


@pytest.mark.parametrize(
    "kwargs, expected", [({}, 710_749), ({"bias_tuning": False}, 673_117), ({"use_memory_bank": False}, 671_533)]
)
def test_point_mae_size_counts(kwargs, expected):
    with torch.device("meta"):
        model = get_peft_model(
            PointTransformerForClassification(PointTransformerConfig(num_labels=15)), PointPromptConfig(**kwargs)
        )
    trainable = model.get_nb_trainable_parameters()[0]
    assert trainable == expected
    assert trainable == closed_form_count(
        bias=kwargs.get("bias_tuning", True), bank=kwargs.get("use_memory_bank", True)
    )
    assert 700_000 <= trainable <= 770_000 or kwargs


# ------------------------------------------------------------------ the memory bank


def test_parameter_free_attention_hand_checked():
    bank = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0], [2.0, 0.1]])
    query = torch.tensor([[1.0, 0.05]])
    cm = bank_prompt_input(query, bank, k=2)
    # cosine with (1, 0.05): rows 4 (2, 0.1) and 0 (1, 0) are the two most similar
    assert torch.equal(cm[0, 2], bank[4]) and torch.equal(cm[0, 3], bank[0])
    sims = torch.nn.functional.cosine_similarity(query, bank[[4, 0]])
    w = sims.softmax(0)
    torch.testing.assert_close(cm[0, 1], w[0] * bank[4] + w[1] * bank[0])
    assert torch.equal(cm[0, 0], query[0])
    with pytest.raises(ValueError, match="exceeds the memory bank's 5 rows"):
        bank_prompt_input(query, bank, k=6)


def test_bank_is_required_built_from_frozen_features_and_saved(data, tmp_path):
    model = prompt_model()
    with pytest.raises(ValueError, match="build_memory_bank"):
        model(points=points())
    rows = build_memory_bank(model, data["train"], num_points=128, max_size=20, seed=1)
    bank = model.base_model.point_prompt_bank["default"]
    assert rows == 20 == model.peft_config["default"].bank_size and bank.shape == (20, 48)
    full = build_memory_bank(prompt_model(), data["train"], num_points=128)  # without max_size: one row per sample
    assert full == data["train"].num_rows
    model.save_pretrained(tmp_path)
    saved = load_file(tmp_path / "adapter_model.safetensors")
    assert saved["base_model.point_prompt_bank"].shape == (20, 48)
    assert not any(key.startswith("base_model.model.point_transformer.encoder.layers.0.base_layer") for key in saved)
    half = prompt_model()
    build_memory_bank(half, data["train"], num_points=128, dtype="float16")
    assert half.base_model.point_prompt_bank["default"].dtype == torch.float16


def test_bank_features_are_the_frozen_pretrained_encoder(data):
    model = train_steps(no_dropout(with_bank(data)))  # training must not change phi
    encoder = model.get_base_model().point_transformer
    x = points()
    phi = model.base_model.query_features(x)
    with model.disable_adapter(), torch.no_grad():
        encoder.eval()
        reference = encoder(x, add_cls_token=False).pooler_output
    torch.testing.assert_close(phi, reference)


# ------------------------------------------------------------------ behaviour


def test_disable_adapter_gives_base_output(data):
    torch.manual_seed(0)
    base = PointTransformerForClassification(tiny_transformer(num_labels=15)).eval()
    x = points()
    with torch.no_grad():
        reference = base(points=x).logits.clone()
    model = get_peft_model(base, PointPromptConfig(**SMALL))
    build_memory_bank(model, data["train"], num_points=128)
    train_steps(no_dropout(model))
    model.eval()
    with torch.no_grad():
        adapted = model(points=x).logits
        with model.disable_adapter():
            assert torch.equal(model(points=x).logits, reference)
    assert not torch.allclose(adapted, reference)


@pytest.mark.parametrize("bias_tuning", [True, False])
def test_only_adapter_parameters_change(data, bias_tuning):
    model = no_dropout(with_bank(data, bias_tuning=bias_tuning))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    train_steps(model)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert all("point_prompt_" in n or "modules_to_save" in n for n in changed), changed
    assert any("point_prompt_bias" in n for n in changed) is bias_tuning
    assert any("point_prompt_coords" in n for n in changed) and any("point_prompt_geometry" in n for n in changed)


def test_not_identity_at_init():
    """The documented deviation from peft's identity-at-init convention (specs/point_prompt.md §1): the prompts enter
    attention and the GA adapter adds its propagated update, so the adapted output differs from the base at step 0;
    with the adapters disabled it is the base output exactly."""
    torch.manual_seed(0)
    base = PointTransformerForClassification(tiny_transformer(num_labels=15)).eval()
    x = points()
    with torch.no_grad():
        reference = base(points=x).logits.clone()
    model = get_peft_model(base, PointPromptConfig(**SMALL, use_memory_bank=False)).eval()
    with torch.no_grad():
        adapted = model(points=x).logits
        with model.disable_adapter():
            assert torch.equal(model(points=x).logits, reference)
    assert (adapted - reference).abs().max() > 1e-4


def _naive_local_pool(self, name, rows, neighbours):
    """The GA pooling as written in the paper: LN3 and the attention on each gathered neighbourhood, amax."""
    shared = self.shared.geometry[name]
    batch, a, k = neighbours.shape
    neighbourhoods = gather_points(rows, neighbours).reshape(batch * a, k, rows.shape[-1])
    drop_path = getattr(self.base_layer, "drop_path", torch.nn.Identity())
    return (neighbourhoods + drop_path(shared.attn(shared.norm(neighbourhoods)))).amax(dim=1)


def test_geometry_pooling_equals_the_per_neighbourhood_computation(data, monkeypatch):
    """The GA adapter normalises and projects rows before gathering them (cheaper, less memory kept for backward);
    loss, every gradient and the BatchNorm statistics must be those of the per-neighbourhood computation."""

    def run(naive: bool):
        model = no_dropout(with_bank(data)).train()
        if naive:
            monkeypatch.setattr(PointPromptBlock, "_local_pool", _naive_local_pool)
        x = points(batch=4)
        loss = model(points=x, labels=torch.tensor([0, 1, 2, 3])).loss
        loss.backward()
        monkeypatch.undo()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        stats = {n: b.clone() for n, b in model.named_buffers() if "ga_norm" in n}
        return loss.detach(), grads, stats

    loss_a, grads_a, stats_a = run(False)
    loss_b, grads_b, stats_b = run(True)
    torch.testing.assert_close(loss_a, loss_b, rtol=1e-6, atol=1e-7)
    assert grads_a.keys() == grads_b.keys() and any("point_prompt_geometry" in n for n in grads_a)
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], rtol=1e-4, atol=1e-6, msg=name)
    assert stats_a.keys() == stats_b.keys() and stats_a
    for name in stats_a:
        torch.testing.assert_close(stats_a[name], stats_b[name], rtol=1e-5, atol=1e-7, msg=name)


def test_sample_output_independent_of_batch_in_eval(data):
    model = with_bank(data).eval()
    x = points(batch=4)
    with torch.no_grad():
        full = model(points=x).logits
        alone = model(points=x[1:2]).logits
        changed = x.clone()
        changed[0] = torch.randn_like(changed[0]) * 3
        other = model(points=changed).logits
    torch.testing.assert_close(full[1:2], alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(full[1:], other[1:], atol=1e-5, rtol=1e-5)


def test_knn_uses_only_own_sample_centres_and_prompt_coords():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 16, 3, generator=g)
    coords = torch.randn(5, 3, generator=g) * 0.1
    graph = build_graph(centres, coords, num_anchors=8, k=4)
    assert graph.neighbours.shape == (3, 8, 4) and int(graph.neighbours.max()) < 5 + 16
    for b in range(3):
        nodes = torch.cat([coords, centres[b]])
        anchors = nodes[graph.anchors[b]]
        for j in range(8):
            d = ((nodes - anchors[j]) ** 2).sum(-1)
            assert set(graph.neighbours[b, j].tolist()) == set(d.topk(4, largest=False).indices.tolist())
    # moving another sample changes nothing here
    moved = centres.clone()
    moved[0] += 10.0
    again = build_graph(moved, coords, num_anchors=8, k=4)
    assert torch.equal(again.neighbours[1:], graph.neighbours[1:])
    torch.testing.assert_close(again.weights[1:], graph.weights[1:])
    torch.testing.assert_close(graph.weights.sum(-1), torch.ones(3, 16))


def test_save_load_with_bank_in_fresh_process(data, tmp_path):
    torch.manual_seed(0)
    PointTransformerForClassification(tiny_transformer(num_labels=15)).save_pretrained(tmp_path / "base")
    model = get_peft_model(
        PointTransformerForClassification.from_pretrained(tmp_path / "base"), PointPromptConfig(**SMALL)
    )
    build_memory_bank(model, data["train"], num_points=128)
    train_steps(no_dropout(model))
    model.eval()
    x = points(seed=5)
    torch.save(x, tmp_path / "x.pt")
    with torch.no_grad():
        expected = model(points=x).logits
    model.save_pretrained(tmp_path / "adapter")
    script = textwrap.dedent(f"""
        import torch, hf_point_peft
        from peft import PeftModel
        from hf_point_peft import PointTransformerForClassification
        base = PointTransformerForClassification.from_pretrained({str(tmp_path / "base")!r})
        model = PeftModel.from_pretrained(base, {str(tmp_path / "adapter")!r}).eval()
        assert model.base_model.point_prompt_bank["default"].shape[0] == {data["train"].num_rows}
        with torch.no_grad():
            torch.save(model(points=torch.load({str(tmp_path / "x.pt")!r})).logits, {str(tmp_path / "out.pt")!r})
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert torch.equal(torch.load(tmp_path / "out.pt"), expected)


def test_two_adapters_and_delete(data):
    model = with_bank(data)
    model.add_adapter("other", PointPromptConfig(**SMALL, use_memory_bank=False))
    model.eval()
    x = points()
    with torch.no_grad():
        a = model(points=x).logits
        model.set_adapter("other")
        b = model(points=x).logits
    assert not torch.allclose(a, b)
    assert model.base_model.point_prompt_coords["other"].requires_grad
    assert not model.base_model.point_prompt_coords["default"].requires_grad
    model.delete_adapter("default")
    assert "default" not in model.base_model.point_prompt_coords and "default" not in model.base_model.point_prompt_bank
    with torch.no_grad():
        assert torch.equal(model(points=x).logits, b)


def test_pointgpt_supported_with_prompts_after_sos_and_cls(data):
    model = prompt_model(PointGPTForClassification, lambda **kw: tiny_gpt(generator_num_hidden_layers=0, **kw))
    assert model.peft_config["default"].num_prefix_tokens == 2
    build_memory_bank(model, data["train"], num_points=128)
    train_steps(no_dropout(model), steps=2)
    model.eval()
    assert torch.isfinite(model(points=points()).logits).all()


def test_errors():
    with pytest.raises(ValueError, match="bank_topk .4. must equal num_prompt_tokens - 2 .8."):
        PointPromptConfig(bank_topk=4)
    with pytest.raises(ValueError, match="ga_attn_heads"):
        PointPromptConfig(ga_attn_dim=10, ga_attn_heads=4)
    model = prompt_model()
    with pytest.raises(ValueError, match="cannot be merged"):
        model.merge_and_unload()

    class Other(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.config = type(
                "C", (), {"model_type": "pointnet", "to_dict": lambda self: {"model_type": "pointnet"}}
            )()
            self.block = torch.nn.Linear(3, 3)

    with pytest.raises((TypeError, ValueError), match="pointnet|Other"):
        get_peft_model(
            Other(), PointPromptConfig(target_modules=["block"], tokenizer_module="block", num_prefix_tokens=1)
        )


def test_unload_restores_base(data):
    torch.manual_seed(0)
    base = PointTransformerForClassification(tiny_transformer(num_labels=15)).eval()
    x = points()
    with torch.no_grad():
        reference = base(points=x).logits.clone()
    model = get_peft_model(base, PointPromptConfig(**SMALL))
    build_memory_bank(model, data["train"], num_points=128)
    restored = model.unload().eval()
    assert not any(len(m._forward_hooks) or len(m._forward_pre_hooks) for m in restored.modules())
    with torch.no_grad():
        assert torch.equal(restored(points=x).logits, reference)


def test_pickle_and_deepcopy(data):
    import copy
    import pickle

    model = with_bank(data).eval()
    x = points()
    with torch.no_grad():
        expected = model(points=x).logits
        for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
            assert torch.equal(clone(points=x).logits, expected)
            block = next(m for m in clone.modules() if type(m).__name__ == "PointPromptBlock")
            assert block.shared.bank is clone.base_model.point_prompt_bank


def test_peft_model_state_has_no_unregistered_shared_state(data):
    model = with_bank(data)
    blocks = [m for m in model.modules() if type(m).__name__ == "PointPromptBlock"]
    assert blocks and all(b.shared is blocks[0].shared for b in blocks)
    # the shared modules are registered once, on the tuner
    names = [n for n, _ in model.named_parameters() if "point_prompt_geometry" in n]
    assert names and all(n.startswith("base_model.point_prompt_geometry") for n in names)
