"""ImageBind audio trunk in HF format: config checks, shapes, Auto classes, save/load, the bias-kv attention against
torch.nn.MultiheadAttention, the official checkpoint layout both ways (and against a re-statement of the official
module tree and forward), the projection head, gradient checkpointing and input errors."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel

import hf_point_peft  # noqa: F401  (registers the Auto classes)
from hf_point_peft.models import (
    AutoModelForPointCloudClassification,
    ImageBindAudioConfig,
    ImageBindAudioModel,
    ImageBindAudioModelWithProjection,
)
from hf_point_peft.models.imagebind_audio.convert_imagebind_audio import (
    convert_imagebind_audio_checkpoint,
    export_imagebind_audio_state_dict,
)
from hf_point_peft.models.imagebind_audio.modeling_imagebind_audio import ImageBindAudioAttention

TINY = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 64,
    "num_mel_bins": 32,
    "target_length": 36,
    "patch_size": 16,
    "patch_stride": 10,
    "projection_dim": 24,
}
# what the weights of a checkpoint cannot tell
OVERRIDES = {k: TINY[k] for k in ("num_attention_heads", "num_mel_bins", "target_length", "patch_stride")}


def tiny(**kw) -> ImageBindAudioConfig:
    return ImageBindAudioConfig(**{**TINY, **kw})


def features(batch: int = 2, seed: int = 0, config: ImageBindAudioConfig | None = None) -> torch.Tensor:
    config = config or tiny()
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 1, config.num_mel_bins, config.target_length, generator=g)


def randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Every parameter random (LayerNorm scales around 1), so that no mapping mistake can hide behind an init."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g, dtype=p.dtype)
            p.copy_(1.0 + 0.1 * noise if "norm" in name and name.endswith("weight") else 0.2 * noise)
    return model


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ------------------------------------------------------------------------------------------------------- config


def test_defaults_are_imagebind_huge_audio():
    config = ImageBindAudioConfig()
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (768, 12, 12)
    assert (config.num_mel_bins, config.target_length, config.patch_size, config.patch_stride) == (128, 204, 16, 10)
    assert (config.num_mel_patches, config.num_time_patches, config.num_patches) == (12, 19, 228)
    assert (config.layer_norm_eps, config.patch_norm_eps, config.add_bias_kv) == (1e-6, 1e-5, True)
    assert (config.projection_dim, config.logit_scale, config.drop_path_rate) == (1024, 20.0, 0.1)
    with torch.device("meta"):
        model = ImageBindAudioModelWithProjection(config)
    assert model.embeddings.position_embeddings.shape == (1, 229, 768)
    # conv 768*256 + patch LN 1536 + cls 768 + pos 229*768 + 12 blocks * (2 LN 3072 + in_proj 3*768*769
    # + bias_kv 1536 + out_proj 768*769 + fc1 768*3072+3072 + fc2 3072*768+768) + final LN 1536 + projection 768*1024
    assert n_params(model) == 86_235_648
    rates = [layer.drop_path.drop_prob for layer in model.encoder.layers]
    torch.testing.assert_close(torch.tensor(rates), torch.linspace(0, 0.1, 12), atol=1e-7, rtol=0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_attention_heads": 5}, r"hidden_size \(32\) must be divisible by num_attention_heads \(5\)"),
        ({"patch_size": 40}, r"patch_size \(40\) cannot exceed num_mel_bins \(32\)"),
        ({"target_length": 12}, r"patch_size \(16\) cannot exceed target_length \(12\)"),
        ({"patch_stride": 0}, r"patch_stride must be a positive integer, got 0"),
        ({"num_hidden_layers": -1}, r"num_hidden_layers must be a positive integer, got -1"),
        ({"drop_path_rate": 1.5}, r"drop_path_rate must be in \[0, 1\), got 1.5"),
        ({"hidden_act": "nope"}, r"hidden_act must name an activation .* got 'nope'"),
        ({"logit_scale": 0.0}, r"logit_scale must be a positive number, got 0.0"),
        ({"layer_norm_eps": -1e-6}, r"layer_norm_eps must be a positive number, got -1e-06"),
    ],
)
def test_config_rejects_impossible_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny(**kwargs)


# ------------------------------------------------------------------------------------------------- the model


def test_forward_shapes_and_outputs():
    torch.manual_seed(0)
    config = tiny()
    assert (config.num_mel_patches, config.num_time_patches) == (2, 3)
    model = ImageBindAudioModel(config).eval()
    x = features(config=config)
    with torch.no_grad():
        out = model(input_features=x, output_hidden_states=True)
        as_tuple = model(x, return_dict=False)
    assert out.last_hidden_state.shape == (2, 7, 32)
    assert torch.equal(out.pooler_output, out.last_hidden_state[:, 0])
    assert len(out.hidden_states) == 3 and all(h.shape == (2, 7, 32) for h in out.hidden_states)
    torch.testing.assert_close(model.layernorm(out.hidden_states[-1]), out.last_hidden_state)
    assert isinstance(as_tuple, tuple) and torch.equal(as_tuple[0], out.last_hidden_state)
    assert model.get_input_embeddings() is model.embeddings.patch_embeddings


def test_patch_tokens_are_row_major_mel_by_time():
    torch.manual_seed(0)
    config = tiny(num_mel_bins=40, target_length=56)  # a 3 x 5 grid
    embeddings = ImageBindAudioModel(config).embeddings
    x = features(1, config=config)
    with torch.no_grad():
        tokens = embeddings.patch_embeddings(x)
    weight = embeddings.patch_embeddings.projection.weight
    assert tokens.shape == (1, 15, 32)
    for mel in range(3):
        for time in range(5):
            window = x[0, :, 10 * mel : 10 * mel + 16, 10 * time : 10 * time + 16]
            expected = (weight * window).sum(dim=(1, 2, 3))
            torch.testing.assert_close(tokens[0, mel * 5 + time], expected, atol=1e-5, rtol=1e-5)


def test_bad_input_shape_raises_naming_the_shape():
    model = ImageBindAudioModel(tiny()).eval()
    for shape in [(2, 32, 36), (2, 1, 32, 40), (2, 2, 32, 36), (2, 1, 36, 32)]:
        with pytest.raises(ValueError, match=re.escape(str(shape))):
            model(input_features=torch.zeros(shape))
    with pytest.raises(ValueError, match="input_features is required"):
        model()


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = randomise(ImageBindAudioModelWithProjection(tiny())).eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "config.json").is_file() and (tmp_path / "model.safetensors").is_file()
    reloaded = ImageBindAudioModelWithProjection.from_pretrained(tmp_path).eval()
    trunk = AutoModel.from_pretrained(tmp_path).eval()  # the bare trunk ignores projection and logit_scale
    assert type(trunk) is ImageBindAudioModel and not hasattr(trunk, "projection")
    x = features()
    with torch.no_grad():
        expected = model(input_features=x)
        again = reloaded(input_features=x)
        bare = trunk(input_features=x)
    assert torch.equal(again.audio_embeds, expected.audio_embeds)
    assert torch.equal(again.last_hidden_state, expected.last_hidden_state)
    assert torch.equal(bare.last_hidden_state, expected.last_hidden_state)
    assert torch.equal(reloaded.logit_scale, model.logit_scale)


def test_auto_classes_build_the_trunk():
    config = AutoConfig.for_model("imagebind_audio", **TINY)
    assert type(config) is ImageBindAudioConfig
    model = AutoModel.from_config(config)
    assert type(model) is ImageBindAudioModel
    assert model(input_features=features()).last_hidden_state.shape == (2, 7, 32)
    with pytest.raises(ValueError):  # a source encoder, not a point-cloud classifier
        AutoModelForPointCloudClassification.from_config(config)


def _mha_from(attention: ImageBindAudioAttention, add_bias_kv: bool) -> nn.MultiheadAttention:
    width = attention.q_proj.in_features
    mha = nn.MultiheadAttention(width, attention.num_heads, bias=True, add_bias_kv=add_bias_kv, batch_first=True)
    mha = mha.to(attention.q_proj.weight.dtype)
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.cat([attention.q_proj.weight, attention.k_proj.weight, attention.v_proj.weight]))
        mha.in_proj_bias.copy_(torch.cat([attention.q_proj.bias, attention.k_proj.bias, attention.v_proj.bias]))
        mha.out_proj.weight.copy_(attention.o_proj.weight)
        mha.out_proj.bias.copy_(attention.o_proj.bias)
        if add_bias_kv:
            mha.bias_k.copy_(attention.bias_k)
            mha.bias_v.copy_(attention.bias_v)
    return mha.eval()


@pytest.mark.parametrize("add_bias_kv", [True, False])
def test_attention_matches_torch_multihead_attention(add_bias_kv):
    attention = randomise(ImageBindAudioAttention(tiny(add_bias_kv=add_bias_kv)), seed=3).double().eval()
    if add_bias_kv:
        assert attention.bias_k.shape == attention.bias_v.shape == (1, 1, 32)
        assert attention.bias_k.abs().sum() > 0
    else:
        assert attention.bias_k is None and "bias_k" not in dict(attention.named_parameters())
    mha = _mha_from(attention, add_bias_kv)
    x = torch.randn(3, 7, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = mha(x, x, x, need_weights=False)[0]
        torch.testing.assert_close(attention(x), expected, atol=1e-10, rtol=1e-10)
        # masks: additive float (same convention) and bool (torch MHA: True = blocked; ours: True = may attend)
        additive = torch.randn(7, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
        expected = mha(x, x, x, need_weights=False, attn_mask=additive)[0]
        torch.testing.assert_close(attention(x, additive), expected, atol=1e-10, rtol=1e-10)
        blocked = torch.ones(7, 7, dtype=torch.bool).triu(1)
        expected = mha(x, x, x, need_weights=False, attn_mask=blocked)[0]
        torch.testing.assert_close(attention(x, ~blocked), expected, atol=1e-10, rtol=1e-10)


def test_projection_embeds_are_normalised_and_scaled_by_20():
    torch.manual_seed(0)
    model = randomise(ImageBindAudioModelWithProjection(tiny())).eval()
    assert "logit_scale" not in dict(model.named_parameters()) and "logit_scale" in model.state_dict()
    assert model.logit_scale.shape == () and not model.logit_scale.requires_grad
    torch.testing.assert_close(model.logit_scale, torch.tensor(math.log(20.0)))
    with torch.no_grad():
        out = model(input_features=features())
    assert out.audio_embeds.shape == (2, 24)
    torch.testing.assert_close(out.audio_embeds.norm(dim=-1), torch.full((2,), 20.0))
    expected = F.normalize(out.pooler_output @ model.projection.weight.T, dim=-1) * 20.0
    torch.testing.assert_close(out.audio_embeds, expected)
    assert model.projection.bias is None


def test_gradient_checkpointing_gives_same_gradients():
    model = randomise(ImageBindAudioModelWithProjection(tiny(drop_path_rate=0.3)))
    model.train()
    x = features()

    def grads():
        torch.manual_seed(7)  # the same drop-path draws in both runs
        model.zero_grad()
        model(input_features=x).audio_embeds.square().sum().backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain = grads()
    model.activation_checkpointing_enable()
    assert all(layer.gradient_checkpointing for layer in model.encoder.layers)
    checkpointed = grads()
    assert plain.keys() == checkpointed.keys() == dict(model.named_parameters()).keys()
    for name in plain:
        torch.testing.assert_close(plain[name], checkpointed[name], atol=1e-6, rtol=1e-5, msg=name)


# --------------------------------------------------------------------------------------- the official layout


def official_audio_keys(depth: int) -> set[str]:
    """The audio keys of `ImageBindModel.state_dict()` (see the converter's docstring for where each comes from)."""
    keys = {
        "modality_preprocessors.audio.cls_token",
        "modality_preprocessors.audio.rgbt_stem.proj.weight",
        "modality_preprocessors.audio.rgbt_stem.norm_layer.weight",
        "modality_preprocessors.audio.rgbt_stem.norm_layer.bias",
        "modality_preprocessors.audio.pos_embedding_helper.pos_embed",
        "modality_heads.audio.0.weight",
        "modality_heads.audio.0.bias",
        "modality_heads.audio.2.weight",
        "modality_postprocessors.audio.1.log_logit_scale",
    }
    for n in range(depth):
        block = f"modality_trunks.audio.blocks.{n}."
        keys |= {block + "attn.in_proj_weight", block + "attn.in_proj_bias", block + "attn.bias_k"}
        keys |= {block + "attn.bias_v", block + "attn.out_proj.weight", block + "attn.out_proj.bias"}
        for part in ("norm_1", "norm_2", "mlp.fc1", "mlp.fc2"):
            keys |= {block + part + ".weight", block + part + ".bias"}
    return keys


OTHER_MODALITIES = {
    "modality_trunks.vision.blocks.0.norm_1.weight": torch.ones(40),
    "modality_preprocessors.vision.rgbt_stem.proj.1.weight": torch.zeros(40, 3, 2, 14, 14),
    "modality_preprocessors.text.token_embedding.weight": torch.zeros(10, 40),
    "modality_heads.depth.0.weight": torch.ones(16),
    "modality_postprocessors.thermal.1.log_logit_scale": torch.tensor(math.log(10.0)),
    "modality_postprocessors.text.1.log_logit_scale": torch.tensor(math.log(1 / 0.07)),
    "modality_trunks.imu.blocks.0.attn.bias_k": torch.zeros(1, 1, 16),
}


def test_converter_maps_the_official_layout_both_ways(tmp_path):
    torch.manual_seed(0)
    model = randomise(ImageBindAudioModelWithProjection(tiny()), seed=5).eval()
    official = export_imagebind_audio_state_dict(model)
    assert set(official) == official_audio_keys(2)
    assert official["modality_trunks.audio.blocks.1.attn.in_proj_weight"].shape == (96, 32)
    checkpoint = {**{k: v.clone() for k, v in official.items()}, **OTHER_MODALITIES}
    path = tmp_path / "imagebind_huge.pth"
    torch.save({"model": checkpoint}, path)  # a wrapped state dict, read with torch.load(weights_only=True)

    converted, report = convert_imagebind_audio_checkpoint(path, output_dir=tmp_path / "hf", **OVERRIDES)
    assert type(converted) is ImageBindAudioModelWithProjection and not converted.training
    assert set(report.used) == set(official)  # every audio key used ...
    assert report.used["modality_trunks.audio.blocks.0.attn.in_proj_weight"] == (
        "encoder.layers.0.attention.{q,k,v}_proj.weight"
    )
    assert set(report.dropped) == set(OTHER_MODALITIES)  # ... every other key dropped with its modality
    assert report.dropped["modality_trunks.vision.blocks.0.norm_1.weight"] == "other modality: vision"
    assert not report.unrecognised and not report.missing
    summary = report.summary()
    assert f"{len(official)} tensors used, 7 dropped, 0 unrecognised" in summary
    assert "dropped 2 (other modality: text)" in summary
    assert (tmp_path / "hf" / "model.safetensors").is_file() and (tmp_path / "hf" / "conversion_report.txt").is_file()

    assert converted.config.projection_dim == 24 and converted.config.intermediate_size == 64
    torch.testing.assert_close(converted.config.logit_scale, 20.0)
    ours, theirs = model.state_dict(), converted.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    again = export_imagebind_audio_state_dict(converted)
    assert again.keys() == official.keys() and all(torch.equal(again[k], official[k]) for k in official)
    x = features()
    with torch.no_grad():
        assert torch.equal(converted(input_features=x).audio_embeds, model(input_features=x).audio_embeds)
    reloaded = ImageBindAudioModelWithProjection.from_pretrained(tmp_path / "hf").eval()
    with torch.no_grad():
        assert torch.equal(reloaded(input_features=x).audio_embeds, model(input_features=x).audio_embeds)
    # the bare trunk exports the official trunk / preprocessor / head-norm keys only
    trunk_keys = set(export_imagebind_audio_state_dict(ImageBindAudioModel(tiny())))
    assert trunk_keys == official_audio_keys(2) - {
        "modality_heads.audio.2.weight",
        "modality_postprocessors.audio.1.log_logit_scale",
    }


def test_converter_refuses_shapes_that_do_not_fit():
    model = randomise(ImageBindAudioModelWithProjection(tiny()))
    official = export_imagebind_audio_state_dict(model)

    bad = dict(official)
    bad["modality_trunks.audio.blocks.1.attn.in_proj_weight"] = torch.zeros(90, 32)
    with pytest.raises(ValueError, match=r"blocks\.1\.attn\.in_proj_weight' has shape \(90, 32\).*\(96, 32\)"):
        convert_imagebind_audio_checkpoint(bad, **OVERRIDES)

    bad = dict(official)
    bad["modality_trunks.audio.blocks.1.attn.out_proj.weight"] = torch.zeros(32, 31)
    with pytest.raises(ValueError, match=r"blocks\.1\.attn\.out_proj\.weight' has shape \(32, 31\).*\(32, 32\)"):
        convert_imagebind_audio_checkpoint(bad, **OVERRIDES)

    # the position table (1 + 2*3 rows) does not fit the default 12 x 19 grid
    with pytest.raises(ValueError, match=r"pos_embed' has shape \(1, 7, 32\).*\(1, 229, 32\)"):
        convert_imagebind_audio_checkpoint(official, num_attention_heads=4)

    with pytest.raises(ValueError, match="no audio trunk|not an ImageBind checkpoint"):
        convert_imagebind_audio_checkpoint(OTHER_MODALITIES)


class _Stem(nn.Module):
    def __init__(self, c: ImageBindAudioConfig):
        super().__init__()
        self.proj = nn.Conv2d(1, c.hidden_size, c.patch_size, c.patch_stride, bias=False)
        self.norm_layer = nn.LayerNorm(c.hidden_size)


class _PosHelper(nn.Module):
    def __init__(self, c: ImageBindAudioConfig):
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + c.num_patches, c.hidden_size))


class _Preprocessor(nn.Module):
    def __init__(self, c: ImageBindAudioConfig):
        super().__init__()
        self.rgbt_stem = _Stem(c)
        self.pos_embedding_helper = _PosHelper(c)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.hidden_size))


class _Mlp(nn.Module):
    def __init__(self, c: ImageBindAudioConfig):
        super().__init__()
        self.fc1 = nn.Linear(c.hidden_size, c.intermediate_size)
        self.fc2 = nn.Linear(c.intermediate_size, c.hidden_size)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class _Block(nn.Module):
    def __init__(self, c: ImageBindAudioConfig):
        super().__init__()
        self.attn = nn.MultiheadAttention(c.hidden_size, c.num_attention_heads, bias=True, add_bias_kv=True)
        self.norm_1 = nn.LayerNorm(c.hidden_size, eps=1e-6)
        self.norm_2 = nn.LayerNorm(c.hidden_size, eps=1e-6)
        self.mlp = _Mlp(c)

    def forward(self, x):  # x: [L, B, C], the official trunk's sequence-first layout
        h = self.norm_1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm_2(x))


class _Trunk(nn.Module):
    def __init__(self, c: ImageBindAudioConfig):
        super().__init__()
        self.blocks = nn.Sequential(*[_Block(c) for _ in range(c.num_hidden_layers)])


class _NoParams(nn.Module):  # SelectElement / Normalize: modules without tensors at their Sequential index
    pass


class _LogitScaling(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("log_logit_scale", torch.tensor(math.log(20.0)))


class OfficialAudioPath(nn.Module):
    """The audio path of the official `ImageBindModel` re-stated with its attribute names (so that `load_state_dict`
    with strict=True checks every exported key name and shape) and its forward: stem -> LN -> [CLS; tokens] + pos ->
    blocks (sequence-first nn.MultiheadAttention with add_bias_kv) -> head LN -> token 0 -> linear -> normalise ->
    clip(exp(log scale), max=100) times."""

    def __init__(self, c: ImageBindAudioConfig):
        super().__init__()
        self.modality_preprocessors = nn.ModuleDict({"audio": _Preprocessor(c)})
        self.modality_trunks = nn.ModuleDict({"audio": _Trunk(c)})
        self.modality_heads = nn.ModuleDict(
            {
                "audio": nn.Sequential(
                    nn.LayerNorm(c.hidden_size, eps=1e-6),
                    _NoParams(),
                    nn.Linear(c.hidden_size, c.projection_dim, bias=False),
                )
            }
        )
        self.modality_postprocessors = nn.ModuleDict({"audio": nn.Sequential(_NoParams(), _LogitScaling())})

    def forward(self, audio):
        pre = self.modality_preprocessors["audio"]
        tokens = pre.rgbt_stem.proj(audio).flatten(2).transpose(1, 2)
        tokens = pre.rgbt_stem.norm_layer(tokens)
        tokens = torch.cat([pre.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        x = (tokens + pre.pos_embedding_helper.pos_embed).transpose(0, 1)
        for block in self.modality_trunks["audio"].blocks:
            x = block(x)
        x = x.transpose(0, 1)
        head = self.modality_heads["audio"]
        x = head[2](head[0](x)[:, 0])
        scale = self.modality_postprocessors["audio"][1].log_logit_scale.exp().clamp(max=100)
        return F.normalize(x, dim=-1) * scale


def test_matches_a_restatement_of_the_official_audio_path():
    config = tiny(drop_path_rate=0.0)
    model = randomise(ImageBindAudioModelWithProjection(config), seed=11).double().eval()
    reference = OfficialAudioPath(config).double().eval()
    reference.load_state_dict(export_imagebind_audio_state_dict(model), strict=True)
    x = features(3, seed=4).double()
    with torch.no_grad():
        torch.testing.assert_close(model(input_features=x).audio_embeds, reference(x), atol=1e-10, rtol=1e-10)
    # and the other way: weights created in the official layout convert to the same function
    randomise(reference, seed=12)
    converted, report = convert_imagebind_audio_checkpoint(
        {k: v.float() for k, v in reference.state_dict().items()}, **OVERRIDES
    )
    assert not report.unrecognised and not report.missing and not report.dropped
    with torch.no_grad():
        torch.testing.assert_close(converted.double()(input_features=x).audio_embeds, reference(x), atol=1e-5, rtol=0)
