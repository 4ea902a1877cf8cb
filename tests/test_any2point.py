"""Any2Point: every supported source builds / trains / saves / loads, the virtual projections match hand-computed
lookups, guidance weights are a distribution, batch independence, the trainable set, counts and errors."""

from __future__ import annotations

import math

import pytest
import torch
from peft import PeftModel, get_peft_model
from transformers import (
    ASTConfig,
    ASTModel,
    BertConfig,
    BertModel,
    CLIPTextConfig,
    CLIPTextModel,
    Dinov2Config,
    Dinov2Model,
    RobertaConfig,
    RobertaModel,
)

import hf_point_peft  # noqa: F401
from hf_point_peft import Any2PointConfig
from hf_point_peft.tuners.any2point.layer import guidance_weights, segment_max, segment_mean
from hf_point_peft.tuners.any2point.projection import pe_1d, pe_2d, view_rotations
from hf_point_peft.tuners.any2point.tokenizer import PointPNTokenizer

W = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}


def sources():
    out = {
        "clip_text_model": lambda: CLIPTextModel(
            CLIPTextConfig(
                **W, max_position_embeddings=77, vocab_size=100, bos_token_id=0, eos_token_id=1, pad_token_id=2
            )
        ),
        "bert": lambda: BertModel(BertConfig(**W, vocab_size=100, max_position_embeddings=64), add_pooling_layer=False),
        "roberta": lambda: RobertaModel(
            RobertaConfig(**W, vocab_size=100, max_position_embeddings=66, pad_token_id=1), add_pooling_layer=False
        ),
        "dinov2": lambda: Dinov2Model(Dinov2Config(**W, image_size=56, patch_size=14)),
        "audio-spectrogram-transformer": lambda: ASTModel(ASTConfig(**W, num_mel_bins=32, max_length=60)),
    }
    try:
        from hf_point_peft.models.imagebind_audio import ImageBindAudioConfig, ImageBindAudioModel

        out["imagebind_audio"] = lambda: ImageBindAudioModel(
            ImageBindAudioConfig(**W, num_mel_bins=32, target_length=36)
        )
    except ImportError:  # pragma: no cover - the port ships with the package
        pass
    return out


SMALL = {"knn_k": 8, "num_views": 3}


def cloud(batch=2, n=512, seed=0):
    return torch.randn(batch, n, 3, generator=torch.Generator().manual_seed(seed)) * 0.5


@pytest.mark.parametrize("model_type", list(sources()))
def test_every_source_trains_saves_and_loads(model_type, tmp_path):
    torch.manual_seed(0)
    source = sources()[model_type]()
    source.save_pretrained(tmp_path / "source")
    model = get_peft_model(source, Any2PointConfig(num_labels=4, **SMALL))
    config = model.peft_config["default"]
    assert config.source_model_type == model_type and config.coef is not None and config.adapter_rank is not None
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()
    loss = model(points=cloud(), labels=torch.tensor([0, 3])).loss
    loss.backward()
    optimizer.step()
    model.eval()
    x = cloud(seed=1)
    with torch.no_grad():
        expected = model(points=x).logits
    model.save_pretrained(tmp_path / "adapter")
    from safetensors.torch import load_file

    saved = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    assert all("any2point_" in k for k in saved), [k for k in saved if "any2point_" not in k]
    assert not any("position_embedding" in k for k in saved)  # the source table is read, never copied
    reloaded_source = type(source).from_pretrained(tmp_path / "source")
    reloaded = PeftModel.from_pretrained(reloaded_source, tmp_path / "adapter").eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(points=x).logits, expected)


def test_point_forward_takes_the_source_model_s_output_flags():
    """return_dict=False gives a tuple, output_hidden_states the input of every layer and the last output, as the
    source model's own forward; another keyword is refused naming it (all were ignored)."""
    torch.manual_seed(0)
    model = get_peft_model(sources()["bert"](), Any2PointConfig(num_labels=3, **SMALL)).eval()
    x, labels = cloud(), torch.tensor([0, 2])
    with torch.no_grad():
        out = model(points=x, labels=labels, output_hidden_states=True)
        as_tuple = model(points=x, labels=labels, return_dict=False)
        assert model(points=x).hidden_states is None
    assert len(out.hidden_states) == 3 and out.hidden_states[0].shape == out.hidden_states[-1].shape
    assert isinstance(as_tuple, tuple) and torch.equal(as_tuple[0], out.loss) and torch.equal(as_tuple[1], out.logits)
    with pytest.raises(TypeError, match="unexpected keyword argument\\(s\\) label; it takes points, labels"):
        model(points=x, label=labels)


def test_source_modality_unchanged_and_disabled_points_refused():
    torch.manual_seed(0)
    source = sources()["bert"]().eval()
    ids = torch.randint(3, 100, (2, 9))
    with torch.no_grad():
        reference = source(input_ids=ids).last_hidden_state
    layout = [(name, type(module)) for name, module in source.named_modules()]
    keys = list(source.state_dict())
    model = get_peft_model(source, Any2PointConfig(num_labels=3, **SMALL, init_weights=False))
    model.train()
    model(points=cloud(), labels=torch.tensor([0, 1])).loss.backward()
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).last_hidden_state, reference)
        with model.disable_adapter():
            assert torch.equal(model(input_ids=ids).last_hidden_state, reference)
            with pytest.raises(ValueError, match="disabled"):
                model(points=cloud())
    restored = model.unload()
    assert "forward" not in restored.__dict__ and "accepts_loss_kwargs" not in restored.__dict__
    # the layer wrappers and the attach points inside the layers are gone: the source's own modules and keys
    assert [(name, type(module)) for name, module in restored.named_modules()] == layout
    assert list(restored.state_dict()) == keys
    with torch.no_grad():
        assert torch.equal(restored(input_ids=ids).last_hidden_state, reference)


def test_1d_lookup_matches_hand_interpolation():
    length, width = 11, 4
    table = torch.arange(length * width, dtype=torch.float32).reshape(length, width)
    # three centres on a line; with one view (identity-free rotation is applied, so compute the expected values)
    centres = torch.tensor([[[0.0, 0.0, 0.0], [0.3, 0.1, -0.2], [1.0, 0.5, 0.25]]])
    views = pe_1d(centres, table, [-1.0, 0.0, 1.0], 1, cell_size=2.0)
    r = view_rotations(1)[0]
    q = centres[0] @ r.T
    q = q - q.mean(0)
    d = torch.tensor([-1.0, 0.0, 1.0]) / math.sqrt(2)
    proj = q @ d
    s = (proj - proj.min()) / (proj.max() - proj.min())
    for i in range(3):
        x = float(s[i]) * (length - 1)
        lo = min(int(math.floor(x)), length - 1)
        hi = min(lo + 1, length - 1)
        phi = x - lo
        torch.testing.assert_close(views.pe[0, i], (1 - phi) * table[lo] + phi * table[hi])
        assert int(views.cells[0, 0, i]) == int(x // 2)
    assert views.num_cells == 6
    flat = pe_1d(torch.zeros(1, 3, 3), table, [1.0, 0.0, 0.0], 2, 2.0)  # max == min -> s = 0 -> row 0
    torch.testing.assert_close(flat.pe[0], table[0].expand(3, -1))


def test_2d_lookup_matches_hand_bilinear():
    rows, cols, width, pitch = 3, 4, 2, 10
    grid = torch.arange(rows * cols * width, dtype=torch.float32).reshape(rows, cols, width)
    centres = torch.tensor([[[0.1, -0.2, 0.3]]])
    views = pe_2d(centres, grid, -1.5, 1, pitch, cell_size=10.0)
    q = centres[0, 0] @ view_rotations(1)[0].T - torch.tensor([0.0, 0.0, -1.5])
    u, v = q[0] / q[2], q[1] / q[2]
    height, canvas = rows * pitch, cols * pitch
    px = ((u + 1) * canvas / 2 - 0.5) % canvas
    py = ((v + 1) * height / 2 - 0.5) % height
    col, row = float(px) * (cols - 1) / (canvas - 1), float(py) * (rows - 1) / (height - 1)
    c0, r0 = int(math.floor(col)), int(math.floor(row))
    fc, fr = col - c0, row - r0
    expected = (
        (1 - fr) * (1 - fc) * grid[r0, c0]
        + (1 - fr) * fc * grid[r0, c0 + 1]
        + fr * (1 - fc) * grid[r0 + 1, c0]
        + fr * fc * grid[r0 + 1, c0 + 1]
    )
    torch.testing.assert_close(views.pe[0, 0], expected, atol=1e-4, rtol=1e-4)
    assert int(views.cells[0, 0, 0]) == int(px // 10) + int(py // 10) * 4 and views.num_cells == 12


def test_guidance_weights_are_positive_and_sum_to_one():
    g = torch.Generator().manual_seed(0)
    views, ref = torch.randn(6, 50, 8, generator=g), torch.randn(50, 8, generator=g)
    views[2] = -ref  # cosine -1: weight 0 before normalisation
    w = guidance_weights(views, ref)
    assert (w >= 0).all() and (w[[0, 1, 3, 4, 5]] > 0).all()
    torch.testing.assert_close(w.sum(0), torch.ones(50), atol=1e-5, rtol=0)


def test_segment_ops():
    x = torch.tensor([[1.0], [3.0], [5.0], [-2.0]])
    ids = torch.tensor([0, 0, 2, 2])
    torch.testing.assert_close(segment_mean(x, ids, 3), torch.tensor([[2.0], [0.0], [1.5]]))
    torch.testing.assert_close(segment_max(x, ids, 3), torch.tensor([[3.0], [0.0], [5.0]]))


def test_sample_independent_of_batch_in_eval():
    torch.manual_seed(0)
    model = get_peft_model(sources()["dinov2"](), Any2PointConfig(num_labels=3, **SMALL, init_weights=False)).eval()
    x = cloud(batch=3)
    other = x.clone()
    other[0] = torch.randn_like(other[0]) * 2
    with torch.no_grad():
        a = model(points=x).logits
        b = model(points=other).logits
        c = model(points=x[2:]).logits
    torch.testing.assert_close(a[1:], b[1:], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a[2:], c, atol=1e-5, rtol=1e-5)


def test_concurrent_point_and_source_calls_in_threads_each_see_their_own_call():
    """The bottleneck handed to a layer's attach point belongs to one call: point forwards of different clouds and
    calls in the source's own modality, running at once in threads on one model, give what each gives alone."""
    from concurrent.futures import ThreadPoolExecutor

    torch.manual_seed(0)
    model = get_peft_model(sources()["bert"](), Any2PointConfig(num_labels=3, **SMALL, init_weights=False)).eval()
    calls = [{"points": cloud(seed=s)} for s in range(4)] + [{"input_ids": torch.randint(3, 100, (2, 9))}] * 2

    def run(kwargs):
        with torch.no_grad():  # grad mode is per thread
            out = model(**kwargs)
        return out.logits if "points" in kwargs else out.last_hidden_state

    alone = [run(kwargs) for kwargs in calls]
    with ThreadPoolExecutor(max_workers=3) as pool:
        together = list(pool.map(run, calls * 4))
    for i, out in enumerate(together):
        assert torch.equal(out, alone[i % len(calls)]), i


def test_only_the_trainable_set_receives_gradients():
    torch.manual_seed(0)
    source = sources()["clip_text_model"]()
    frozen_names = {n for n, _ in source.named_parameters()}
    model = get_peft_model(source, Any2PointConfig(num_labels=3, **SMALL))
    model.train()
    model(points=cloud(), labels=torch.tensor([0, 2])).loss.backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert with_grad == trainable
    assert all("any2point_" in n for n in trainable)
    assert not any(n.replace("base_model.model.", "").replace(".base_layer", "") in frozen_names for n in trainable)
    prefixes = {n.split(".")[1] for n in trainable if n.startswith("base_model.any2point_")}
    assert prefixes == {
        "any2point_tokenizer",
        "any2point_proj",
        "any2point_cls",
        "any2point_local_attn",
        "any2point_view_norm",
        "any2point_final_norm",
        "any2point_head",
    }


def test_counts_at_width_768():
    assert sum(p.numel() for p in PointPNTokenizer().parameters()) == 276_672
    with torch.device("meta"):
        clip = CLIPTextModel(
            CLIPTextConfig(
                hidden_size=768,
                intermediate_size=3072,
                num_hidden_layers=12,
                num_attention_heads=12,
                max_position_embeddings=77,
            )
        )
        one_d = get_peft_model(clip, Any2PointConfig(num_labels=15))
        dino = Dinov2Model(
            Dinov2Config(
                hidden_size=768,
                intermediate_size=3072,
                num_hidden_layers=12,
                num_attention_heads=12,
                image_size=518,
                patch_size=14,
            )
        )
        two_d = get_peft_model(dino, Any2PointConfig(num_labels=15))
    for model, expected in ((one_d, 948_312), (two_d, 800_760)):
        head = sum(p.numel() for p in model.base_model.any2point_head.parameters())
        assert head == 463_631
        assert model.get_nb_trainable_parameters()[0] - head == expected
    assert one_d.peft_config["default"].adapter_rank == 16 and two_d.peft_config["default"].adapter_rank == 8


def test_unsupported_backbone_lists_supported_types():
    from transformers import GPT2Config, GPT2Model

    with pytest.raises(ValueError, match=r"supported model types: \['audio-spectrogram-transformer', 'bert'"):
        get_peft_model(GPT2Model(GPT2Config(n_embd=32, n_layer=1, n_head=4)), Any2PointConfig(num_labels=3))


def test_config_validation_and_presets():
    with pytest.raises(ValueError, match="num_labels"):
        Any2PointConfig()
    with pytest.raises(ValueError, match="num_views"):
        Any2PointConfig(num_labels=3, num_views=7)
    with pytest.raises(ValueError, match="line_direction"):
        Any2PointConfig(num_labels=3, line_direction=(0, 0, 0))
    with pytest.raises(ValueError, match="local_attn_heads"):
        Any2PointConfig(num_labels=3, local_attn_dim=10, local_attn_heads=4)
    preset = Any2PointConfig.from_paper("dinov2", "modelnet40", num_labels=40)
    assert preset.pooling == "max_mean" and preset.coef == 0.1 and preset.init_weights is False
    with pytest.raises(ValueError, match="official_19x12"):
        get_peft_model(sources()["dinov2"](), Any2PointConfig(num_labels=3, audio_grid_layout="official_19x12"))


def test_too_few_points_and_nan():
    model = get_peft_model(sources()["bert"](), Any2PointConfig(num_labels=3, **SMALL))
    with pytest.raises(ValueError, match="needs at least 512"):
        model(points=torch.randn(2, 256, 3))
    bad = cloud()
    bad[1, 5, 0] = float("nan")
    with pytest.raises(ValueError, match="first bad sample index is 1"):
        model(points=bad)


def test_smaller_tokenizer_of_the_same_design(tmp_path):
    """tokenizer_groups / tokenizer_width scale the Point-PN tokenizer (CPU budgets); saved in the config, the token
    count is the last stage's centres, and a projection maps the tokenizer's width to the source's."""
    torch.manual_seed(0)
    model = get_peft_model(
        sources()["bert"](),
        Any2PointConfig(num_labels=3, **SMALL, tokenizer_groups=[64, 32, 16], tokenizer_width=96),
    ).eval()
    tokenizer = model.base_model.any2point_tokenizer["default"]
    tokens, centres = tokenizer(cloud(n=128))
    assert tokens.shape == (2, 16, 96) and centres.shape == (2, 16, 3)
    assert tokenizer.min_points == 64
    assert isinstance(model.base_model.any2point_proj["default"], torch.nn.Linear)  # 96 -> the source's 32
    with torch.no_grad():
        logits = model(points=cloud(n=128)).logits
    model.save_pretrained(tmp_path)
    torch.manual_seed(0)  # the same frozen source
    reloaded = PeftModel.from_pretrained(sources()["bert"](), tmp_path).eval()
    assert reloaded.peft_config["default"].tokenizer_groups == [64, 32, 16]
    with torch.no_grad():
        assert torch.equal(reloaded(points=cloud(n=128)).logits, logits)
    with pytest.raises(ValueError, match="needs at least 64"):
        model(points=torch.randn(2, 48, 3))
    with pytest.raises(ValueError, match="tokenizer_groups"):
        Any2PointConfig(num_labels=3, tokenizer_groups=[16, 32, 64])
    with pytest.raises(ValueError, match="tokenizer_width"):
        Any2PointConfig(num_labels=3, tokenizer_width=100)
    with pytest.raises(ValueError, match=r"tokenizer_groups.*64\.9"):  # never truncated silently
        Any2PointConfig(num_labels=3, tokenizer_groups=[128, 64.9, 32])
    with pytest.raises(ValueError, match="tokenizer_width"):
        Any2PointConfig(num_labels=3, tokenizer_width=96.0)
