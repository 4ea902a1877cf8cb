"""HF-format point models: construction, Auto classes, I/O round trips, sizes, bad input, checkpointing, autocast."""

import pytest
import torch
from tiny import TINY, n_params, points, tiny_gpt, tiny_transformer
from transformers import AutoConfig, AutoModel

import hf_point_peft  # noqa: F401  (registers the Auto classes)
from hf_point_peft import (
    AutoModelForPointCloudClassification,
    PointGPTConfig,
    PointGPTForClassification,
    PointGPTModel,
    PointTransformerConfig,
    PointTransformerForClassification,
    PointTransformerForMaskedModeling,
    PointTransformerModel,
)
from hf_point_peft.data import PointCloudCollator
from hf_point_peft.models.pretrained import BATCH_BOOKKEEPING_KEYS


def test_auto_classes_build_both_families():
    assert type(AutoModel.from_config(AutoConfig.for_model("point_transformer"))) is PointTransformerModel
    assert type(AutoModel.from_config(AutoConfig.for_model("point_gpt", **TINY))) is PointGPTModel
    model = AutoModelForPointCloudClassification.from_config(tiny_gpt())
    assert type(model) is PointGPTForClassification


def test_point_mae_size_matches_paper():
    config = PointTransformerConfig(num_labels=15)
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (384, 12, 6)
    assert (config.num_groups, config.group_size) == (64, 32)
    with torch.device("meta"):
        model = PointTransformerForClassification(config)
    assert n_params(model) == 22_093_327  # "22.1M" in every paper
    assert n_params(model.classifier) == 267_535 and n_params(model.point_transformer.cls_embedding) == 768


@pytest.mark.parametrize("size, expected", [("S", 29.19e6), ("B", 120.39e6), ("L", 360.36e6)])
def test_point_gpt_sizes(size, expected):
    config = PointGPTConfig.from_size(size, num_labels=15)
    with torch.device("meta"):
        model = PointGPTForClassification(config)
    assert abs(n_params(model) - expected) < 0.01e6
    if size == "L":
        assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (1024, 24, 16)
        assert n_params(model.classifier) == 595_215


@pytest.mark.parametrize(
    "factory, cls", [(tiny_transformer, PointTransformerForClassification), (tiny_gpt, PointGPTForClassification)]
)
def test_save_load_round_trip(tmp_path, factory, cls):
    torch.manual_seed(0)
    model = cls(factory()).eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "config.json").is_file() and (tmp_path / "model.safetensors").is_file()
    reloaded = AutoModelForPointCloudClassification.from_pretrained(tmp_path).eval()
    assert type(reloaded) is cls
    x = points()
    with torch.no_grad():
        assert torch.equal(model(points=x).logits, reloaded(points=x).logits)


def test_outputs_carry_hidden_states_and_centres():
    model = PointTransformerModel(tiny_transformer()).eval()
    out = model(points=points(), output_hidden_states=True)
    assert out.last_hidden_state.shape == (3, 17, 48) and out.centres.shape == (3, 16, 3)
    assert out.pooler_output.shape == (3, 96) and len(out.hidden_states) == 3 and out.num_prefix_tokens == 1
    # the first centre is input point 0 (official FPS start)
    assert torch.equal(out.centres[:, 0], points()[:, 0])
    gpt = PointGPTModel(tiny_gpt()).eval()
    g = gpt(points=points())
    assert g.last_hidden_state.shape == (3, 18, 48) and g.num_prefix_tokens == 2
    assert torch.equal(g.centres[:, 0], points()[:, 0])  # the chain starts at the first FPS centre


@pytest.mark.parametrize(
    "build",
    [
        lambda: PointTransformerModel(tiny_transformer()),
        lambda: PointTransformerForClassification(tiny_transformer()),
        lambda: PointGPTModel(tiny_gpt()),
    ],
    ids=["point_transformer", "classifier", "point_gpt"],
)
def test_a_keyword_the_forward_does_not_take_is_refused(build):
    """The forwards take **kwargs; a misspelt or unsupported keyword was ignored without a word."""
    model = build().eval()
    with torch.no_grad():
        model(points=points(), output_attentions=False)  # transformers' common flag, not asked for: accepted
        batch = PointCloudCollator(num_points=128, train=False, keep_raw=True)(
            [{"points": points(batch=1, n=160)[0].numpy(), "label": 1, "index": i} for i in range(2)]
        )
        assert set(batch) - {"points", "labels"} == set(BATCH_BOOKKEEPING_KEYS)  # model(**batch) works
        if isinstance(model, (PointTransformerModel, PointGPTModel)):
            del batch["labels"]  # the encoders take no labels
        model(**batch)
        with pytest.raises(
            TypeError, match=r"forward\(\) got unexpected keyword argument\(s\) output_hiden_states; it takes points"
        ):
            model(points=points(), output_hiden_states=True)
        with pytest.raises(TypeError, match=r"output_attentions \(attention weights are not returned"):
            model(points=points(), output_attentions=True)


def test_classifier_loss_and_label_errors():
    model = PointTransformerForClassification(tiny_transformer()).eval()
    out = model(points=points(), labels=torch.tensor([0, 4, 2]))
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    with pytest.raises(ValueError, match="label 5 at batch index 1 is outside"):
        model(points=points(), labels=torch.tensor([0, 5, 2]))


@pytest.mark.parametrize(
    "cls, factory", [(PointTransformerForClassification, tiny_transformer), (PointGPTForClassification, tiny_gpt)]
)
def test_bad_points_raise_clear_errors(cls, factory):
    model = cls(factory()).eval()
    with pytest.raises(ValueError, match="float"):
        model(points=torch.zeros(2, 128, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="3-D"):
        model(points=torch.zeros(128, 3))
    with pytest.raises(ValueError, match="needs at least 16"):
        model(points=torch.randn(2, 5, 3))
    bad = points()
    bad[1, 7, 2] = float("nan")
    with pytest.raises(ValueError, match="first bad sample index is 1"):
        model(points=bad)
    with pytest.raises(ValueError, match="channels"):
        model(points=torch.randn(2, 128, 6))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"hidden_size": 50, "num_attention_heads": 4}, "divisible"),
        ({"group_size": 200, "num_points": 128}, "group_size"),
        ({"num_groups": 0}, "num_groups"),
        ({"drop_path_rate": 1.5}, "drop_path_rate"),
        ({"fps_start": "middle"}, "fps_start"),
        ({"patch_first_channels": [16, -1]}, "patch_first_channels"),
    ],
)
def test_impossible_configs_fail_at_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tiny_transformer(**kwargs)
    if "drop_path_rate" not in kwargs:
        with pytest.raises(ValueError, match=match):
            tiny_gpt(**kwargs)


def test_point_gpt_unknown_size():
    with pytest.raises(ValueError, match="unknown PointGPT size"):
        PointGPTConfig.from_size("XL")


def test_extra_channels_when_configured():
    model = PointTransformerForClassification(tiny_transformer(num_channels=6)).eval()
    pts = torch.randn(2, 128, 6)
    assert model(points=pts).logits.shape == (2, 5)


@pytest.mark.parametrize(
    "cls, factory", [(PointTransformerForClassification, tiny_transformer), (PointGPTForClassification, tiny_gpt)]
)
def test_gradient_checkpointing_gives_same_gradients(cls, factory):
    torch.manual_seed(0)
    model = cls(factory(drop_path_rate=0.0) if cls is PointTransformerForClassification else factory())
    model.train()
    for m in model.modules():  # deterministic forward: no dropout
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    x, y = points(), torch.tensor([0, 1, 2])

    def grads():
        model.zero_grad()
        model(points=x, labels=y).loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain = grads()
    model.activation_checkpointing_enable()
    assert any(getattr(m, "gradient_checkpointing", False) for m in model.modules())
    checkpointed = grads()
    assert plain.keys() == checkpointed.keys()
    for name in plain:
        torch.testing.assert_close(plain[name], checkpointed[name], atol=1e-6, rtol=1e-5, msg=name)


@pytest.mark.parametrize(
    "cls, factory", [(PointTransformerForClassification, tiny_transformer), (PointGPTForClassification, tiny_gpt)]
)
def test_bf16_autocast_close_to_fp32(cls, factory):
    model = cls(factory()).eval()
    x = points()
    with torch.no_grad():
        ref = model(points=x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(points=x)
    assert low.logits.dtype == torch.bfloat16
    assert torch.equal(low.centres, ref.centres)  # grouping is precision-independent
    torch.testing.assert_close(low.logits.float(), ref.logits, atol=0.15, rtol=0.1)


def test_float64_inputs_work():
    model = PointTransformerForClassification(tiny_transformer()).double().eval()
    assert model(points=points(dtype=torch.float64)).logits.dtype == torch.float64


def test_masked_modeling_masks_and_learns():
    torch.manual_seed(0)
    model = PointTransformerForMaskedModeling(tiny_transformer(mask_ratio=0.5))
    out = model(points=points())
    assert out.mask.shape == (3, 16) and (out.mask.sum(1) == 8).all()
    assert out.reconstruction.shape == (3, 8, 8, 3) and out.target.shape == (3, 8, 8, 3)
    fixed = torch.zeros(3, 16, dtype=torch.bool)
    fixed[:, :3] = True
    x = points()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        loss = model(points=x, bool_masked_pos=fixed).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    block = PointTransformerForMaskedModeling(tiny_transformer(mask_type="block"))
    assert (block(points=points()).mask.sum(1) == int(0.6 * 16)).all()
    with pytest.raises(ValueError, match="same number of patches"):
        uneven = torch.zeros(3, 16, dtype=torch.bool)
        uneven[0, 0] = True
        model(points=x, bool_masked_pos=uneven)


def test_pointgpt_generator_loss_only_in_training():
    model = PointGPTForClassification(tiny_gpt())
    x, y = points(), torch.tensor([0, 1, 2])
    model.eval()
    eval_loss = model(points=x, labels=y).loss
    ce = torch.nn.functional.cross_entropy(model(points=x).logits, y)
    torch.testing.assert_close(eval_loss, ce)
    model.train()
    torch.manual_seed(0)
    out = model(points=x, labels=y)
    assert out.loss > 0
    without = PointGPTForClassification(tiny_gpt(generator_num_hidden_layers=0))
    assert without.generator is None


def test_sample_independent_of_batch_in_eval():
    model = PointTransformerForClassification(tiny_transformer()).eval()
    x = points(batch=4)
    with torch.no_grad():
        full = model(points=x).logits
        single = model(points=x[2:3]).logits
    torch.testing.assert_close(full[2:3], single, atol=1e-5, rtol=1e-5)
