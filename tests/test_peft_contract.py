"""peft's generic adapter contract, checked for the three methods the way peft's own suite checks LoRA
(`tests/testing_common.py`): any adapter name, selected saves, strict key loading, meta-device loading, half-precision
bases, compiled models, the project's model card, mixed-adapter batches, several active adapters.

Every case builds a tiny random-weight base from a seed, so two builds with one seed are the same base."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from peft import PeftModel, get_peft_model, get_peft_model_state_dict, inject_adapter_in_model
from peft.tuners.tuners_utils import BaseTunerLayer
from safetensors.torch import load_file, save_file
from tiny import no_dropout, points, tiny_gpt, tiny_transformer
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

WEIGHTS = "adapter_model.safetensors"


@dataclass
class Case:
    """One method on one base: how to build the base (from a seed), the config, and an input batch."""

    name: str
    base: Callable[[], torch.nn.Module]
    config: Callable[..., object]
    inputs: Callable[..., torch.Tensor]
    prefix: str
    mixed_batches: bool = True

    def build_base(self, seed: int = 0) -> torch.nn.Module:
        torch.manual_seed(seed)
        return no_dropout(self.base())

    def peft_model(self, seed: int = 0, adapter_name: str = "default", adapter_seed: int = 1, **kwargs):
        base = self.build_base(seed)
        torch.manual_seed(adapter_seed)
        model = get_peft_model(base, self.config(), adapter_name=adapter_name, **kwargs)
        self.finish(model, adapter_name)
        return no_dropout(model)

    def add(self, model, adapter_name: str, adapter_seed: int) -> None:
        torch.manual_seed(adapter_seed)
        model.add_adapter(adapter_name, self.config())
        self.finish(model, adapter_name)
        no_dropout(model)

    def finish(self, model, adapter_name: str) -> None:
        """Give the adapter what it needs to run (Point-PEFT: its memory bank) and non-trivial BN statistics."""
        if self.prefix == "point_prompt_":
            gen = torch.Generator().manual_seed(7)
            build_memory_bank(
                model, [torch.randn(4, 128, 3, generator=gen) for _ in range(2)], adapter_name=adapter_name
            )


def _bert():
    config = BertConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        vocab_size=100,
        max_position_embeddings=64,
    )
    return BertModel(config, add_pooling_layer=False)


def _cloud(batch: int = 3, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    return (torch.randn(batch, 512, 3, generator=torch.Generator().manual_seed(seed)) * 0.5).to(dtype)


PROMPT = {"num_prompt_tokens": 6, "bank_topk": 4, "ga_k": 4, "prompt_layers": 1}
A2P = {"num_labels": 4, "knn_k": 8, "num_views": 3, "tokenizer_groups": (64, 32, 16), "tokenizer_width": 96}

CASES = {
    "pointgst": Case(
        "pointgst",
        lambda: PointTransformerForClassification(tiny_transformer()),
        lambda: PointGSTConfig(init_weights=False, local_size=8),
        points,
        "point_gst_",
    ),
    "pointgst-gpt": Case(
        "pointgst-gpt",
        lambda: PointGPTForClassification(tiny_gpt()),
        lambda: PointGSTConfig(init_weights=False, local_size=8),
        points,
        "point_gst_",
    ),
    "point-prompt": Case(
        "point-prompt",
        lambda: PointTransformerForClassification(tiny_transformer()),
        lambda: PointPromptConfig(init_weights=False, **PROMPT),
        points,
        "point_prompt_",
    ),
    "point-prompt-gpt": Case(
        "point-prompt-gpt",
        lambda: PointGPTForClassification(tiny_gpt()),
        lambda: PointPromptConfig(init_weights=False, **PROMPT),
        points,
        "point_prompt_",
    ),
    "any2point": Case(
        "any2point",
        _bert,
        lambda: Any2PointConfig(init_weights=False, **A2P),
        _cloud,
        "any2point_",
        mixed_batches=False,
    ),
}
METHODS = ["pointgst", "point-prompt", "any2point"]  # one base each, for the slower checks


def cases(names=None):
    return [pytest.param(CASES[n], id=n) for n in (names or CASES)]


@torch.no_grad()
def logits(model, x: torch.Tensor, **kwargs) -> torch.Tensor:
    model.eval()
    return model(points=x, **kwargs).logits


def adapter_state(model, adapter_name: str = "default") -> dict[str, torch.Tensor]:
    return get_peft_model_state_dict(model, adapter_name=adapter_name)


def assert_same_state(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def train_step(model, case: Case, seed: int = 0) -> None:
    """One optimiser step, so that every trainable tensor (and every BN statistic) differs from its initial value."""
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.5)
    x = case.inputs(seed=seed)
    labels = torch.arange(len(x)) % 4
    model(points=x, labels=labels).loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    model.eval()


# ------------------------------------------------------------------ 1. any adapter name, selected saves


@pytest.mark.parametrize("case", cases())
def test_adapter_name_appears_in_parameters_and_not_in_saved_keys(case, tmp_path):
    model = case.peft_model(adapter_name="test-adapter")
    assert any("test-adapter" in n for n, _ in model.named_parameters())
    model.save_pretrained(tmp_path)
    keys = list(load_file(tmp_path / "test-adapter" / WEIGHTS))
    assert any(case.prefix in k for k in keys)
    assert not any("test-adapter" in k or ".default." in k for k in keys), keys


@pytest.mark.parametrize("case", cases())
@pytest.mark.parametrize("saved_name", ["default", "task_a"])
def test_saved_adapter_loads_under_any_name(case, saved_name, tmp_path):
    model = case.peft_model(adapter_name=saved_name)
    train_step(model, case)
    x = case.inputs(seed=5)
    expected = logits(model, x)
    model.save_pretrained(tmp_path)
    folder = tmp_path if saved_name == "default" else tmp_path / saved_name
    for name in ("default", "task_b"):
        loaded = PeftModel.from_pretrained(case.build_base(), folder, adapter_name=name)
        torch.testing.assert_close(logits(loaded, x), expected, rtol=0, atol=1e-6)
        assert_same_state(adapter_state(loaded, name), adapter_state(model, saved_name))
    # and next to a first adapter, through load_adapter
    other = PeftModel.from_pretrained(case.build_base(), folder)
    other.load_adapter(folder, adapter_name="task_c")
    other.set_adapter("task_c")
    torch.testing.assert_close(logits(other, x), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("case", cases())
def test_selected_adapters_save_and_reload(case, tmp_path):
    model = case.peft_model()
    case.add(model, "new_adapter", adapter_seed=2)
    for name in ("default", "new_adapter"):
        model.set_adapter(name)
        train_step(model, case, seed=3)
    x = case.inputs(seed=5)
    expected = {}
    for name in ("default", "new_adapter"):
        model.set_adapter(name)
        expected[name] = logits(model, x)
    assert not torch.allclose(expected["default"], expected["new_adapter"])

    model.save_pretrained(tmp_path / "all")
    loaded = PeftModel.from_pretrained(case.build_base(), tmp_path / "all")
    loaded.load_adapter(tmp_path / "all" / "new_adapter", "new_adapter")
    for name in ("default", "new_adapter"):
        loaded.set_adapter(name)
        torch.testing.assert_close(logits(loaded, x), expected[name], rtol=0, atol=1e-6)
        assert_same_state(adapter_state(loaded, name), adapter_state(model, name))

    model.save_pretrained(tmp_path / "one", selected_adapters=["new_adapter"])
    assert not (tmp_path / "one" / WEIGHTS).exists()
    alone = PeftModel.from_pretrained(case.build_base(), tmp_path / "one" / "new_adapter")
    assert list(alone.peft_config) == ["default"]
    torch.testing.assert_close(logits(alone, x), expected["new_adapter"], rtol=0, atol=1e-6)


@pytest.mark.parametrize("case", cases(METHODS))
def test_adapter_names_that_are_substrings_of_each_other(case, tmp_path):
    model = case.peft_model()
    expected = len(adapter_state(model))
    for i, name in enumerate(["default2", "other_default", "foodefault_bar", "efaul"]):
        case.add(model, name, adapter_seed=10 + i)
    model.save_pretrained(tmp_path, selected_adapters=["default"])
    assert len(load_file(tmp_path / WEIGHTS)) == expected
    for name in ("default", "efaul"):
        assert len(adapter_state(model, name)) == expected


# ------------------------------------------------------------------ strict loading


@pytest.mark.parametrize("case", cases(METHODS))
@pytest.mark.parametrize("edit", ["extra", "missing", "renamed", "reshaped"])
def test_a_key_that_does_not_load_is_an_error_naming_it(case, edit, tmp_path):
    model = case.peft_model()
    model.save_pretrained(tmp_path)
    tensors = load_file(tmp_path / WEIGHTS)
    victim = sorted(k for k in tensors if case.prefix in k)[0]
    if edit == "extra":
        tensors[victim.replace(case.prefix, case.prefix + "unused_")] = tensors[victim].clone()
        bad = victim.replace(case.prefix, case.prefix + "unused_")
    elif edit == "missing":
        del tensors[victim]
        bad = victim
    elif edit == "renamed":
        tensors[victim + "_old"] = tensors.pop(victim)
        bad = victim + "_old"
    else:  # the tensor of another configuration (another rank, width, ...): torch's size mismatch came after injection
        victim = sorted(k for k in tensors if case.prefix in k and tensors[k].dim())[0]
        tensors[victim] = torch.cat([tensors[victim], tensors[victim]])
        bad = victim
    save_file(tensors, tmp_path / WEIGHTS)
    for low_cpu_mem_usage in (False, True):
        base = case.build_base()
        plain = {k: v.clone() for k, v in base.state_dict().items()}
        with pytest.raises(ValueError, match="adapter weights loaded as 'default' .* do not match") as error:
            PeftModel.from_pretrained(base, tmp_path, low_cpu_mem_usage=low_cpu_mem_usage)
        assert bad.split(".")[-2] in str(error.value) and bad.split(".")[-1] in str(error.value)
        if edit == "reshaped":
            assert f"(file {tuple(tensors[victim].shape)}, model" in str(error.value)
        # the refused adapter is gone again: the base is what it was
        assert not any(isinstance(m, BaseTunerLayer) for m in base.modules())
        assert_same_state(base.state_dict(), plain)
    # next to an adapter that loaded, a refused load_adapter leaves the first one working
    good = case.peft_model()
    x = case.inputs(seed=5)
    before = logits(good, x)
    with pytest.raises(ValueError, match=bad.split(".")[-1]):
        good.load_adapter(tmp_path, adapter_name="broken")
    assert list(good.peft_config) == ["default"]
    torch.testing.assert_close(logits(good, x), before, rtol=0, atol=0)


def test_adapters_saved_before_the_name_free_keys_still_load(tmp_path):
    """Adapters written by 0.1.0 kept the adapter name inside the key (`...point_gst_adapter.default.adapt1.bias`)."""
    case = CASES["pointgst"]
    model = case.peft_model()
    train_step(model, case)
    x = case.inputs(seed=5)
    expected = logits(model, x)
    model.save_pretrained(tmp_path)
    legacy = {}
    for key, value in load_file(tmp_path / WEIGHTS).items():
        legacy[key.replace("point_gst_adapter.", "point_gst_adapter.default.")] = value
    assert any(".default." in k for k in legacy)
    save_file(legacy, tmp_path / WEIGHTS)
    loaded = PeftModel.from_pretrained(case.build_base(), tmp_path, adapter_name="elsewhere")
    torch.testing.assert_close(logits(loaded, x), expected, rtol=0, atol=1e-6)


# ------------------------------------------------------------------ 2. low_cpu_mem_usage


@pytest.mark.parametrize("case", cases())
def test_low_cpu_mem_usage_loading(case, tmp_path):
    model = case.peft_model()
    train_step(model, case)
    x = case.inputs(seed=5)
    expected = logits(model, x)
    model.save_pretrained(tmp_path)

    loaded = PeftModel.from_pretrained(case.build_base(), tmp_path, low_cpu_mem_usage=True)
    assert {p.device.type for p in loaded.parameters()} == {"cpu"}
    assert {b.device.type for b in loaded.buffers()} == {"cpu"}
    torch.testing.assert_close(logits(loaded, x), expected, rtol=0, atol=1e-6)
    loaded.load_adapter(tmp_path, adapter_name="other", low_cpu_mem_usage=True)
    assert {p.device.type for p in loaded.parameters()} == {"cpu"}
    loaded.set_adapter("other")
    torch.testing.assert_close(logits(loaded, x), expected, rtol=0, atol=1e-6)

    created = get_peft_model(case.build_base(), case.config(), low_cpu_mem_usage=True)
    assert "meta" in {p.device.type for p in created.parameters()}
    # the methods keep per-forward state on the tuner, so peft refuses bare injection with a pointer to get_peft_model
    with pytest.raises(ValueError, match="get_peft_model"):
        inject_adapter_in_model(case.config(), case.build_base(), low_cpu_mem_usage=True)


# ------------------------------------------------------------------ 3, 4. half-precision bases


def _half_case_inputs(case: Case, dtype):
    """Inputs rounded to `dtype`, so that the float32 reference groups exactly the same points."""
    return case.inputs(seed=5).to(dtype)


@pytest.mark.parametrize("case", cases(METHODS))
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("autocast_adapter_dtype", [True, False])
def test_half_precision_base(case, dtype, autocast_adapter_dtype):
    reference = case.peft_model()
    train_step(reference, case)
    base = case.build_base().to(dtype)
    torch.manual_seed(1)
    model = get_peft_model(base, case.config(), autocast_adapter_dtype=autocast_adapter_dtype)
    case.finish(model, "default")
    # the reference's trained adapter, cast by load_state_dict into whatever dtype the adapter lives in
    model.load_state_dict(reference.state_dict(), strict=False)
    adapter_dtypes = {p.dtype for n, p in model.named_parameters() if case.prefix in n}
    assert adapter_dtypes == ({torch.float32} if autocast_adapter_dtype else {dtype})
    for x in (_half_case_inputs(case, dtype), _half_case_inputs(case, dtype).float()):
        out = logits(model, x)
        assert out.dtype == dtype and torch.isfinite(out).all()
        ref = logits(reference, x.float())
        scale = ref.abs().max()
        assert (out.float() - ref).abs().max() <= 0.1 * scale + 1e-2, (out, ref)


@pytest.mark.parametrize("case", cases(METHODS))
def test_half_precision_base_loaded_with_low_cpu_mem_usage(case, tmp_path):
    """The saved head and cls token (modules_to_save) take the base's dtype, as with a regular load: peft 0.21 assigns
    the file's float32 copies, and the first forward of a bfloat16 base failed on mixed dtypes."""
    reference = case.peft_model()
    train_step(reference, case)
    reference.save_pretrained(tmp_path)
    x = _half_case_inputs(case, torch.bfloat16)
    outputs = []
    for low_cpu_mem_usage in (False, True):
        loaded = PeftModel.from_pretrained(
            case.build_base().to(torch.bfloat16), tmp_path, low_cpu_mem_usage=low_cpu_mem_usage
        )
        saved_copies = {p.dtype for n, p in loaded.named_parameters() if "modules_to_save" in n}
        assert saved_copies <= {torch.bfloat16}, saved_copies
        outputs.append(logits(loaded, x))
        assert outputs[-1].dtype == torch.bfloat16 and torch.isfinite(outputs[-1]).all()
    ref = logits(reference, x.float())
    assert (outputs[1].float() - ref).abs().max() <= 0.1 * ref.abs().max() + 1e-2


@pytest.mark.parametrize("case", cases())
def test_an_adapter_loaded_for_inference_trains_nothing(case, tmp_path):
    """from_pretrained without is_trainable freezes every tensor of the adapter, those the methods wrap after peft's
    injection (Point-PEFT's final norm) included; with is_trainable they train."""
    case.peft_model().save_pretrained(tmp_path)
    frozen = PeftModel.from_pretrained(case.build_base(), tmp_path, adapter_name="served")
    assert [n for n, p in frozen.named_parameters() if p.requires_grad] == []
    trainable = PeftModel.from_pretrained(case.build_base(), tmp_path, adapter_name="served", is_trainable=True)
    assert any(case.prefix in n for n, p in trainable.named_parameters() if p.requires_grad)


@pytest.mark.parametrize("case", cases(METHODS))
def test_autocast_on_a_float32_base_still_works(case):
    model = case.peft_model()
    x = case.inputs(seed=5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = logits(model, x)
    torch.testing.assert_close(out.float(), logits(model, x), rtol=0.1, atol=0.05)


# ------------------------------------------------------------------ 5. the layer contract


@pytest.mark.parametrize("case", cases())
def test_every_tuner_layer_has_in_and_out_features(case):
    model = case.peft_model()
    layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
    assert layers
    for layer in layers:
        assert isinstance(layer.in_features, int) and layer.in_features > 0, type(layer).__name__
        assert isinstance(layer.out_features, int) and layer.out_features > 0, type(layer).__name__


# ------------------------------------------------------------------ 6. torch.compile


def _bases():
    return {
        "point_transformer": (lambda: PointTransformerForClassification(tiny_transformer()), points),
        "point_gpt": (lambda: PointGPTForClassification(tiny_gpt()), points),
    }


@pytest.mark.slow
@pytest.mark.parametrize("name", list(_bases()))
def test_compiled_base_equals_eager(name):
    build, inputs = _bases()[name]
    torch.manual_seed(0)
    model = no_dropout(build()).eval()
    x = inputs(seed=5)
    expected = logits(model, x)
    compiled = torch.compile(model)
    torch.testing.assert_close(logits(compiled, x), expected, rtol=0, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("case", cases(METHODS))
def test_compiled_adapter_equals_eager(case):
    model = case.peft_model()
    train_step(model, case)
    x = case.inputs(seed=5)
    expected = logits(model, x)
    compiled = torch.compile(model)
    torch.testing.assert_close(logits(compiled, x), expected, rtol=0, atol=1e-4)
    # a training-mode forward (dropout off, BN statistics of the batch) and its gradients
    model.train()
    labels = torch.arange(len(x)) % 4
    loss = model(points=x, labels=labels).loss
    grads = torch.autograd.grad(loss, [p for p in model.parameters() if p.requires_grad])
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(state)
    compiled_loss = compiled(points=x, labels=labels).loss
    compiled_grads = torch.autograd.grad(compiled_loss, [p for p in model.parameters() if p.requires_grad])
    torch.testing.assert_close(compiled_loss, loss, rtol=0, atol=1e-4)
    # training-mode BatchNorms normalise with the statistics of 3 clouds, which amplifies float32 round-off of the
    # (differently ordered) compiled reductions to ~1e-3 relative in single entries, and gradients that vanish in
    # exact arithmetic (a Linear bias before a BatchNorm) are pure round-off: compare each gradient as a whole
    floor = 1e-4 * max(float(g.norm()) for g in grads)
    for a, b in zip(compiled_grads, grads):
        assert (a - b).norm() <= 1e-2 * b.norm() + floor


# ------------------------------------------------------------------ 7. every save path writes the project's card


@pytest.mark.parametrize("case", cases(METHODS))
def test_save_pretrained_writes_the_project_card_with_a_portable_base(case, tmp_path):
    from huggingface_hub import ModelCard

    base = case.build_base()
    base.save_pretrained(tmp_path / "my-base")
    base = type(base).from_pretrained(tmp_path / "my-base")  # name_or_path: an absolute local folder
    model = get_peft_model(base, case.config())
    case.finish(model, "default")
    model.save_pretrained(tmp_path / "adapter")
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "my-base"
    card = ModelCard.load(tmp_path / "adapter" / "README.md")
    assert card.data.base_model == "my-base"
    assert card.data.library_name == "peft"
    assert "hf_point_peft" in card.data.tags
    assert "import hf_point_peft" in card.text
    assert str(tmp_path) not in card.content and str(tmp_path) not in json.dumps(config)
    assert "[More Information Needed]" not in card.text


def test_the_embedded_backbone_is_named_portably(tmp_path):
    from huggingface_hub import ModelCard

    from hf_point_peft.training.backbones import load_classifier

    model = get_peft_model(load_classifier("embedded", num_labels=4), PointGSTConfig())
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "hf_point_peft:embedded/pointmae-synthetic-small"
    assert ModelCard.load(tmp_path / "README.md").data.base_model == "hf_point_peft:embedded/pointmae-synthetic-small"
    # and the portable name loads the backbone again
    again = load_classifier(config["base_model_name_or_path"], num_labels=4)
    reloaded = PeftModel.from_pretrained(again, tmp_path)
    x = points(seed=5)
    torch.testing.assert_close(logits(reloaded, x), logits(model, x), rtol=0, atol=1e-6)


def test_every_loading_class_accepts_the_portable_name():
    """The name an adapter records loads through the concrete classes and configs as through the Auto class (the
    concrete class asked the Hub about it: a raw OSError)."""
    from hf_point_peft import AutoModelForPointCloudClassification
    from hf_point_peft.models.point_transformer import (
        PointTransformerConfig,
        PointTransformerForClassification,
        PointTransformerModel,
    )

    name = "hf_point_peft:embedded/pointmae-synthetic-small"
    assert PointTransformerConfig.from_pretrained(name).hidden_size == 192
    auto = AutoModelForPointCloudClassification.from_pretrained(name, num_labels=4)
    concrete = PointTransformerForClassification.from_pretrained(name, num_labels=4)
    for key, value in auto.state_dict().items():
        if not key.startswith("classifier."):  # the new heads are drawn at random
            torch.testing.assert_close(concrete.state_dict()[key], value, rtol=0, atol=0)
    encoder = PointTransformerModel.from_pretrained(name).state_dict()
    for key, value in concrete.point_transformer.state_dict().items():
        torch.testing.assert_close(encoder[key], value, rtol=0, atol=0)
    with pytest.raises(FileNotFoundError, match="'hf_point_peft:embedded/nope' names an embedded model .* it holds"):
        PointTransformerForClassification.from_pretrained("hf_point_peft:embedded/nope")


def test_hub_ids_are_kept():
    config = PointGSTConfig(base_model_name_or_path="user/pointmae-scan")
    assert config.base_model_name_or_path == "user/pointmae-scan"


# ------------------------------------------------------------------ 8. mixed-adapter batches


def _two_adapters(case: Case, **config):
    model = case.peft_model(adapter_name="task_a")
    case.add(model, "task_b", adapter_seed=2)
    for name in ("task_a", "task_b"):
        model.set_adapter(name)
        train_step(model, case, seed=3)
    return model


@pytest.mark.parametrize("case", cases([n for n, c in CASES.items() if c.mixed_batches]))
def test_mixed_adapter_batch_equals_each_sample_under_its_adapter(case):
    model = _two_adapters(case)
    x = case.inputs(batch=6, seed=5)
    names = ["task_a", "task_b", "__base__", "task_b", "task_a", "task_a"]
    out = logits(model, x, adapter_names=names)
    for name in ("task_a", "task_b", "__base__"):
        rows = [i for i, n in enumerate(names) if n == name]
        if name == "__base__":
            with model.disable_adapter():
                alone = logits(model, x[rows])
        else:
            model.set_adapter(name)
            alone = logits(model, x[rows])
        torch.testing.assert_close(out[rows], alone, rtol=0, atol=1e-5)
    # one name per sample, known names only, eval mode only
    with pytest.raises(ValueError, match="6 samples"):
        logits(model, x, adapter_names=names[:5])
    with pytest.raises(ValueError, match="task_z"):
        logits(model, x, adapter_names=["task_z"] * 6)
    model.train()
    with pytest.raises(ValueError, match="training"):
        model(points=x, adapter_names=names)


def test_mixed_batch_sample_scale_equals_each_sample_alone():
    """With `distance_scale="sample"` nothing couples the samples of a batch: a sample's output is its output alone."""
    case = Case(
        "pointgst-sample",
        CASES["pointgst"].base,
        lambda: PointGSTConfig(init_weights=False, local_size=8, distance_scale="sample"),
        points,
        "point_gst_",
    )
    model = _two_adapters(case)
    x = points(4, seed=5)
    names = ["task_b", "task_a", "task_b", "task_a"]
    out = logits(model, x, adapter_names=names)
    for i, name in enumerate(names):
        model.set_adapter(name)
        torch.testing.assert_close(out[i : i + 1], logits(model, x[i : i + 1]), rtol=0, atol=1e-5)


def test_any2point_refuses_mixed_batches_clearly():
    case = CASES["any2point"]
    model = _two_adapters(case)
    with pytest.raises(ValueError, match="Any2Point.*one adapter per forward"):
        logits(model, case.inputs(batch=2, seed=5), adapter_names=["task_a", "task_b"])


# ------------------------------------------------------------------ 9. several active adapters


@pytest.mark.parametrize("case", cases(METHODS))
def test_several_active_adapters_with_the_default_head_say_what_to_pass(case):
    model = case.peft_model(adapter_name="task_a")
    case.add(model, "task_b", adapter_seed=2)
    with pytest.raises(ValueError, match="adapter_names=") as error:
        model.base_model.set_adapter(["task_a", "task_b"])
    assert "task_a" in str(error.value) and "task_b" in str(error.value)


def test_pointgst_several_active_adapters_without_saved_modules_sum():
    base = CASES["pointgst"].build_base()
    torch.manual_seed(1)
    model = get_peft_model(base, PointGSTConfig(init_weights=False, local_size=8, modules_to_save=[]), "a")
    model.add_adapter("b", PointGSTConfig(init_weights=False, local_size=8, modules_to_save=[]))
    x = points(seed=5)
    with model.disable_adapter():
        plain = logits(model, x)
    single = {}
    for name in ("a", "b"):
        model.set_adapter(name)
        single[name] = logits(model, x)
    model.base_model.set_adapter(["a", "b"])
    both = logits(model, x)
    assert not torch.allclose(both, single["a"]) and not torch.allclose(both, single["b"])
    assert torch.isfinite(both).all() and not torch.allclose(both, plain)


# ------------------------------------------------------------------ the rest of peft's generic checks


@pytest.mark.parametrize("case", cases())
def test_disable_adapter_gives_exactly_the_base(case):
    model = case.peft_model(adapter_name="task_a")
    train_step(model, case)
    if case.prefix == "any2point_":
        pytest.skip("Any2Point has no point path without its adapter (checked in test_any2point)")
    x = case.inputs(seed=5)
    base = case.build_base().eval()
    with model.disable_adapter():
        torch.testing.assert_close(logits(model, x), logits(base, x), rtol=0, atol=0)


@pytest.mark.parametrize("case", cases())
def test_training_changes_only_adapter_and_saved_modules(case):
    model = case.peft_model(adapter_name="task_a")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    train_step(model, case)
    for name, param in model.named_parameters():
        changed = not torch.equal(param, before[name])
        own = case.prefix in name or "modules_to_save.task_a" in name
        if changed:
            assert own, name
        elif param.requires_grad:
            # bias-like tensors can stay put only if their gradient was exactly zero; adapters must move
            assert case.prefix not in name or "bias" in name or "norm" in name, name


@pytest.mark.parametrize("case", cases(METHODS))
def test_delete_adapter_and_unload(case):
    model = case.peft_model(adapter_name="task_a")
    case.add(model, "task_b", adapter_seed=2)
    model.delete_adapter("task_a")
    assert list(model.peft_config) == ["task_b"]
    assert not any("task_a" in n for n, _ in model.named_parameters())
    assert not any("task_a" in k for k in model.state_dict())
    with pytest.raises(ValueError):
        model.delete_adapter("unknown")
    base = model.unload()
    assert not any(isinstance(m, BaseTunerLayer) for m in base.modules())


@pytest.mark.parametrize("case", cases(METHODS))
def test_merge_is_refused_before_touching_a_layer(case):
    model = case.peft_model()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for call in (model.merge_and_unload, model.base_model.merge_adapter):
        with pytest.raises(ValueError, match="unload"):
            call()
    assert_same_state(model.state_dict(), state)
    layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
    for layer in layers:  # every layer kind, merged directly: refused with the pointer too (was a bare error)
        with pytest.raises(ValueError, match="cannot be merged.*unload"):
            layer.merge()
    with pytest.warns(UserWarning, match="Already unmerged. Nothing to do."):  # as LoRA's unmerged layers say
        model.unmerge_adapter()
    assert_same_state(model.state_dict(), state)


def test_fresh_process_loads_a_non_default_adapter(tmp_path):
    import subprocess
    import sys
    import textwrap

    case = CASES["pointgst"]
    model = case.peft_model(adapter_name="task_a")
    train_step(model, case)
    model.save_pretrained(tmp_path / "adapters")
    model.base_model.model.save_pretrained(tmp_path / "unused")  # not used: the base is rebuilt from its seed
    torch.save(logits(model, points(seed=5)), tmp_path / "expected.pt")
    script = textwrap.dedent(
        f"""
        import sys, torch
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        import hf_point_peft
        from peft import PeftModel
        from tiny import no_dropout, points, tiny_transformer
        from hf_point_peft import PointTransformerForClassification
        torch.manual_seed(0)
        base = no_dropout(PointTransformerForClassification(tiny_transformer()))
        model = PeftModel.from_pretrained(base, {str(tmp_path / "adapters" / "task_a")!r}, adapter_name="served").eval()
        with torch.no_grad():
            out = model(points=points(seed=5)).logits
        expected = torch.load({str(tmp_path / "expected.pt")!r})
        assert torch.allclose(out, expected, rtol=0, atol=1e-6), (out, expected)
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


@pytest.mark.parametrize("case", cases(["point-prompt", "any2point"]))
def test_tuner_level_modules_follow_the_active_adapter(case):
    """Point-PEFT and Any2Point keep per-adapter modules on the tuner itself (prompt coordinates, shared geometry;
    3D tokenizer, projections, head): like layer adapters, only the active adapter's train, inference mode freezes
    them, and deleting an adapter removes its entries."""
    model = case.peft_model(adapter_name="task_a")
    case.add(model, "task_b", adapter_seed=2)
    tuner = model.base_model

    def trains(name: str) -> set[bool]:
        flags = set()
        for attr in tuner.tuner_adapter_dicts:
            item = getattr(tuner, attr)[name]
            params = [item] if isinstance(item, torch.nn.Parameter) else list(item.parameters())
            flags |= {p.requires_grad for p in params}
        return flags

    assert trains("task_a") == {True} and trains("task_b") == {False}
    model.set_adapter("task_b")
    assert trains("task_a") == {False} and trains("task_b") == {True}
    model.base_model.set_adapter("task_b", inference_mode=True)
    assert trains("task_b") == {False}
    model.delete_adapter("task_a")
    for attr in (*tuner.tuner_adapter_dicts, *tuner.own_dtype_dicts):
        assert "task_a" not in getattr(tuner, attr)


def test_point_prompt_coordinates_frozen_when_not_learned():
    case = CASES["point-prompt"]
    base = case.build_base()
    model = get_peft_model(base, PointPromptConfig(**PROMPT, learn_prompt_coords=False))
    tuner = model.base_model
    assert not tuner.point_prompt_coords["default"].requires_grad
    assert all(p.requires_grad for p in tuner.point_prompt_geometry["default"].parameters())
