"""Official fine-tuned checkpoints of PointGST, Point-PEFT and Any2Point -> adapter folders: built from tables of
the official key names and shapes (tests/official_layouts.py), converted, reloaded with PeftModel.from_pretrained,
and compared with this project's model carrying the same tensors placed by hand; every official key is used or
dropped with a reason; missing sizes are refused with the flags to pass."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from official_layouts import (
    any2point_adapter,
    checkpoint,
    head,
    openpoints_head,
    pcsa,
    point_gpt_finetune,
    point_mae_finetune,
    point_mae_pretrain,
    point_peft_block,
    point_peft_shared,
    random_state,
    source_layers_official,
    to_ours,
)
from peft import PeftModel, get_peft_model

import hf_point_peft  # noqa: F401
from hf_point_peft import (
    Any2PointConfig,
    PointGPTConfig,
    PointGPTForClassification,
    PointGSTConfig,
    PointPromptConfig,
    PointTransformerConfig,
    PointTransformerForClassification,
)
from hf_point_peft.conversion import (
    convert_any2point_checkpoint,
    convert_point_prompt_checkpoint,
    convert_pointgst_checkpoint,
)

W, DEPTH, CLASSES, RANK = 384, 2, 5, 12
SIZES = {"num_groups": 16, "group_size": 8, "num_points": 256}


def cloud(batch: int = 3, n: int = 256, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, n, 3, generator=torch.Generator().manual_seed(seed)) * 0.5


def write_yaml(path, name: str = "PointTransformer_PGST", **extra) -> str:
    """An official fine-tuning yaml in the released flow style (`model : { ... }`)."""
    model = {"NAME": name, "trans_dim": W, "depth": DEPTH, "drop_path_rate": 0.1, "cls_dim": CLASSES, "num_heads": 6}
    model.update(group_size=8, num_group=16, encoder_dims=W, **extra)
    body = ",\n  ".join(f"{k}: {v}" for k, v in model.items())
    path.write_text(f"optimizer : {{\n  type: AdamW,\n  part: adapt}}\n\nmodel : {{\n  {body},\n}}\n\nnpoints: 256\n")
    return str(path)


def pointgst_state(gpt: bool = False, seed: int = 0) -> dict:
    table = point_gpt_finetune(W, DEPTH, CLASSES) if gpt else point_mae_finetune(W, DEPTH, CLASSES)
    blocks = "blocks.layers" if gpt else "blocks.blocks"
    for n in range(DEPTH):
        table += pcsa(f"{blocks}.{n}", W, RANK)
    return random_state(table, seed)


def hand_placed_pointgst(state: dict, gpt: bool, bn_base: dict | None = None) -> torch.nn.Module:
    """This project's model with the official tensors placed by hand: backbone by the module map, PCSA parts by
    attribute (norm_ly1 -> the global branch's norm_g, norm_ly2 -> the local norm_l), BatchNorm statistics into the
    adapter's copies. `bn_base`: other statistics for the base (the pre-trained ones)."""
    sizes = {"hidden_size": W, "num_hidden_layers": DEPTH, "num_labels": CLASSES, "fps_skip_sq_norm": 1e-3, **SIZES}
    if gpt:
        base = PointGPTForClassification(PointGPTConfig(num_attention_heads=6, generator_num_hidden_layers=0, **sizes))
    else:
        base = PointTransformerForClassification(PointTransformerConfig(num_attention_heads=6, **sizes))
    ours = to_ours(state, gpt)
    base.load_state_dict({**ours, **(bn_base or {})}, strict=True)
    model = get_peft_model(base, PointGSTConfig(rank=RANK, local_size=8))
    encoder = model.get_base_model().point_gpt if gpt else model.get_base_model().point_transformer
    blocks = "blocks.layers" if gpt else "blocks.blocks"
    with torch.no_grad():
        for n in range(DEPTH):
            adapter = encoder.encoder.layers[n].point_gst_adapter["default"]
            for official, part in (("down", adapter.down), ("up", adapter.up), ("adapt1", adapter.adapt1)):
                part.weight.copy_(state[f"{blocks}.{n}.gft_adapter.{official}.weight"])
                part.bias.copy_(state[f"{blocks}.{n}.gft_adapter.{official}.bias"])
            for official, part in (("norm_ly1", adapter.norm_g), ("norm_ly2", adapter.norm_l)):
                part.weight.copy_(state[f"{blocks}.{n}.gft_adapter.{official}.weight"])
                part.bias.copy_(state[f"{blocks}.{n}.gft_adapter.{official}.bias"])
        for conv in ("first_conv", "second_conv"):
            bn = getattr(encoder.embeddings.patch_embeddings, conv)[1]
            bn.point_gst_bn_running_mean["default"].copy_(state[f"encoder.{conv}.1.running_mean"])
            bn.point_gst_bn_running_var["default"].copy_(state[f"encoder.{conv}.1.running_var"])
            bn.point_gst_bn_num_batches_tracked["default"].copy_(state[f"encoder.{conv}.1.num_batches_tracked"])
    return model.eval()


def reload(out, gpt: bool = False) -> torch.nn.Module:
    cls = PointGPTForClassification if gpt else PointTransformerForClassification
    return PeftModel.from_pretrained(cls.from_pretrained(out / "base"), out / "adapter").eval()


def assert_every_key_accounted(report, ckpt: dict) -> None:
    keys = set(ckpt["base_model"])
    assert set(report.used) | set(report.dropped) == keys, sorted(keys - set(report.used) - set(report.dropped))
    assert not report.unrecognised and all(report.dropped.values())


@pytest.mark.parametrize("gpt", [False, True], ids=["point-mae", "pointgpt"])
def test_pointgst_converts_and_computes_like_hand_placed(gpt, tmp_path):
    state = pointgst_state(gpt)
    ckpt = checkpoint(state)
    torch.save(ckpt, tmp_path / "ckpt-best.pth")
    name = "GPT_Transformer_PGST" if gpt else "PointTransformer_PGST"
    yaml = write_yaml(tmp_path / "finetune.yaml", name, rank=RANK, local=8)
    converted = convert_pointgst_checkpoint(
        tmp_path / "ckpt-best.pth", official_config=yaml, output_dir=tmp_path / "out"
    )
    assert_every_key_accounted(converted.report, ckpt)
    if gpt:  # the GPT extractor's reconstruction layer and the model's `norm`: defined, unused by the forward
        unused = {f"module.{k}.{p}" for k in ("blocks.increase_dim.0", "norm") for p in ("weight", "bias")}
        assert set(converted.report.dropped) == unused

    model = reload(tmp_path / "out", gpt)
    reference = hand_placed_pointgst(state, gpt)
    pts = cloud()
    with torch.no_grad():
        logits = model(points=pts).logits
        torch.testing.assert_close(logits, reference(points=pts).logits, atol=0, rtol=0)
        torch.testing.assert_close(converted.model(points=pts).logits, logits, atol=0, rtol=0)
    config = json.loads((tmp_path / "out" / "adapter" / "adapter_config.json").read_text())
    assert config["rank"] == RANK and config["local_size"] == 8 and config["peft_type"] == "POINT_GST"
    # the written base, recorded by its folder's name: neither the config nor the card holds a path of this machine
    assert config["base_model_name_or_path"] == "base"
    card = (tmp_path / "out" / "adapter" / "README.md").read_text()
    assert str(tmp_path) not in card and "out/base" in card
    assert "converted from an official checkpoint" in card and "ckpt-best.pth" in card
    assert "degenerate_eps" in card and "import hf_point_peft" in card  # a deviation is listed; the snippet loads
    report = (tmp_path / "out" / "adapter" / "conversion_report.txt").read_text()
    assert "local_size=8 from the official config" in report
    assert all(f"  {key} -> " in report or f"  {key}: " in report for key in ckpt["base_model"])  # every key, where


def test_a_refused_adapter_folder_leaves_the_earlier_base_and_adapter_whole(tmp_path):
    """A conversion that writes two folders checks both before replacing either: a user's file in adapter/ is refused
    (naming it) while base/ still holds the earlier conversion's weights (base/ was replaced first)."""
    yaml = write_yaml(tmp_path / "finetune.yaml", rank=RANK, local=8)
    out = tmp_path / "out"
    convert_pointgst_checkpoint(checkpoint(pointgst_state()), official_config=yaml, output_dir=out)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    (out / "adapter" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"adapter holds files this output does not write \(notes.txt\)"):
        convert_pointgst_checkpoint(checkpoint(pointgst_state(seed=9)), official_config=yaml, output_dir=out)
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after.pop(Path("adapter/notes.txt")) == b"mine"
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["finetune.yaml", "out"]  # no staged folder left behind


def test_pointgst_pretrained_puts_statistics_in_the_adapter(tmp_path):
    state = pointgst_state(seed=1)
    pretrained = random_state(point_mae_pretrain(W, DEPTH), seed=2)
    for key in list(pretrained):  # the official run froze every encoder tensor: only BN statistics moved
        ours = key.removeprefix("MAE_encoder.")
        if key.startswith("MAE_encoder.") and not key.endswith(("running_mean", "running_var", "num_batches_tracked")):
            pretrained[key] = state[ours].clone()
    torch.save(checkpoint(pretrained), tmp_path / "pretrain.pth")
    converted = convert_pointgst_checkpoint(
        checkpoint(state),
        pretrained=tmp_path / "pretrain.pth",
        method_options={"local_size": 8},
        output_dir=tmp_path / "out",
        **SIZES,
    )
    base = PointTransformerForClassification.from_pretrained(tmp_path / "out" / "base")
    stats = "point_transformer.embeddings.patch_embeddings.first_conv.1.running_mean"
    assert torch.equal(base.state_dict()[stats], pretrained["MAE_encoder.encoder.first_conv.1.running_mean"])
    bn_base = {
        f"point_transformer.embeddings.patch_embeddings.{conv}.1.{s}": pretrained[f"MAE_encoder.encoder.{conv}.1.{s}"]
        for conv in ("first_conv", "second_conv")
        for s in ("running_mean", "running_var", "num_batches_tracked")
    }
    reference = hand_placed_pointgst(state, False, bn_base)
    model = reload(tmp_path / "out")
    pts = cloud(seed=3)
    with torch.no_grad():
        torch.testing.assert_close(model(points=pts).logits, reference(points=pts).logits, atol=0, rtol=0)
        with model.disable_adapter():  # the base alone runs on the pre-trained statistics
            plain = model(points=pts).logits
        torch.testing.assert_close(plain, base.eval()(points=pts).logits, atol=0, rtol=0)
    assert "every frozen tensor checked equal" in converted.report.summary()

    pretrained["MAE_encoder.blocks.blocks.1.mlp.fc1.weight"] += 1e-3  # not the checkpoint it was fine-tuned from
    with pytest.raises(
        ValueError, match=r"differ.*blocks\.blocks\.1\.mlp\.fc1\.weight|fc1\.weight.*not the checkpoint"
    ):
        convert_pointgst_checkpoint(
            checkpoint(state), pretrained=checkpoint(pretrained), method_options={"local_size": 8}, **SIZES
        )


def test_pointgst_sizes_are_refused_not_guessed(tmp_path):
    ckpt = checkpoint(pointgst_state())
    with pytest.raises(ValueError, match=r"--num-groups N, --group-size N, --num-points N.*--official-config"):
        convert_pointgst_checkpoint(ckpt, method_options={"local_size": 8})
    with pytest.raises(ValueError, match=r"local_size.*--method-option local_size=N"):
        convert_pointgst_checkpoint(ckpt, **SIZES)
    yaml = write_yaml(tmp_path / "wrong.yaml", cls_dim=40)  # a yaml of another run: 40 classes
    with pytest.raises(ValueError, match=r"num_labels=40.*tensors say num_labels=5"):
        convert_pointgst_checkpoint(ckpt, official_config=yaml, method_options={"local_size": 8})


def test_pointgst_checkpoint_refused_as_a_backbone(tmp_path, capsys):
    from hf_point_peft.cli import main
    from hf_point_peft.models.point_transformer.convert_point_transformer import convert_point_transformer_checkpoint

    ckpt = checkpoint(pointgst_state())
    with pytest.raises(ValueError, match=r"PointGST fine-tuned checkpoint \(20 adapter tensors.*--from pointgst"):
        convert_point_transformer_checkpoint(ckpt, "point-mae", **SIZES)
    torch.save(ckpt, tmp_path / "pgst.pth")
    args = ["convert", "--from", "point-mae", str(tmp_path / "pgst.pth"), "--out", str(tmp_path / "x"), "--num-groups"]
    assert main([*args, "16", "--group-size", "8", "--num-points", "256"]) == 2
    assert "--from pointgst" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_backbone_converter_refuses_unknown_sizes(tmp_path):
    from hf_point_peft.models.point_transformer.convert_point_transformer import convert_point_transformer_checkpoint

    state = random_state(point_mae_finetune(W, 1, CLASSES), seed=4)
    with pytest.raises(ValueError, match=r"num_groups, group_size, num_points cannot be read.*--num-groups N"):
        convert_point_transformer_checkpoint(checkpoint(state), "point-mae")
    yaml = write_yaml(tmp_path / "finetune.yaml", "PointTransformer", depth=1)
    model, report = convert_point_transformer_checkpoint(checkpoint(state), "point-mae", official_config=yaml)
    assert (model.config.num_groups, model.config.group_size, model.config.num_points) == (16, 8, 256)
    assert "num_groups=16 from the official config" in report.summary()
    odd = random_state(point_mae_finetune(200, 1, CLASSES), seed=5)  # no released model is 200 wide
    with pytest.raises(ValueError, match=r"num_attention_heads cannot be read.*--num-heads N"):
        convert_point_transformer_checkpoint(checkpoint(odd), "point-mae", **SIZES)
    model, _ = convert_point_transformer_checkpoint(checkpoint(odd), "point-mae", num_attention_heads=5, **SIZES)
    assert model.config.num_attention_heads == 5
    from hf_point_peft.models.point_gpt.convert_point_gpt import convert_point_gpt_checkpoint

    gpt = random_state(point_gpt_finetune(W, 1, CLASSES), seed=6)
    with pytest.raises(ValueError, match=r"PointGPT checkpoint: num_groups, group_size, num_points cannot be read"):
        convert_point_gpt_checkpoint(checkpoint(gpt), generator_num_hidden_layers=0)


def test_incomplete_checkpoints_are_refused_naming_the_tensor(tmp_path):
    """A missing tensor is never filled with random or zero values: refused, naming it, as a ValueError (one line on
    the command line), wherever the converter would have read it."""
    from hf_point_peft.models.point_transformer.convert_point_transformer import convert_point_transformer_checkpoint

    backbone = random_state(point_mae_finetune(W, DEPTH, CLASSES), seed=4)
    for key in ("blocks.blocks.1.attn.qkv.weight", "blocks.blocks.0.mlp.fc1.weight"):  # used / read for the sizes
        lacking = {k: v for k, v in backbone.items() if k != key}
        with pytest.raises(ValueError, match=f"(lacks 1 tensor of the backbone|has no '{key}')"):
            convert_point_transformer_checkpoint(checkpoint(lacking), "point-mae", **SIZES)
    yaml = write_yaml(tmp_path / "finetune.yaml", rank=RANK, local=8)
    state = pointgst_state()
    for key in ("blocks.blocks.1.gft_adapter.up.weight", "blocks.blocks.0.gft_adapter.down.weight"):
        lacking = {k: v for k, v in state.items() if k != key}
        with pytest.raises(ValueError, match=f"has no '{key}'"):
            convert_pointgst_checkpoint(checkpoint(lacking), official_config=yaml)
    ft, pre, _ = point_peft_states(seed=3)
    del ft["blocks.blocks.0.cp_adapter.ln1.weight"]
    with pytest.raises(ValueError, match="has no 'blocks.blocks.0.cp_adapter.ln1.weight'"):
        convert_point_prompt_checkpoint(checkpoint(ft), pretrained=checkpoint(pre), **SIZES)


def test_convert_keeps_a_users_files_and_names_an_unreadable_bank(tmp_path, capsys):
    from hf_point_peft.cli import main

    torch.save(checkpoint(random_state(point_mae_finetune(W, DEPTH, CLASSES), seed=4)), tmp_path / "mae.pth")
    out = tmp_path / "mine"
    (out / "sub").mkdir(parents=True)
    (out / "notes.txt").write_text("mine")
    args = ["convert", "--from", "point-mae", str(tmp_path / "mae.pth"), "--num-groups", "16", "--group-size", "8"]
    assert main([*args, "--num-points", "256", "--out", str(out)]) == 2
    assert "holds files this output does not write (notes.txt, sub)" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "sub"]
    assert main([*args, "--num-points", "256", "--out", str(tmp_path / "new")]) == 0
    assert main([*args, "--num-points", "256", "--out", str(tmp_path / "new")]) == 0  # an earlier output: replaced
    ft, pre, _ = point_peft_states(seed=3)
    (tmp_path / "bank.pt").write_bytes(b"not a tensor file")
    with pytest.raises(ValueError, match=r"could not read .*bank.pt with torch.load\(weights_only=True\): \w+"):
        convert_point_prompt_checkpoint(
            checkpoint(ft), pretrained=checkpoint(pre), memory_bank=tmp_path / "bank.pt", **SIZES
        )


# ------------------------------------------------------------------------------------------------------ Point-PEFT
PP_DEPTH = 7  # blocks 0-5 prompted, block 6 not: its prompts and cp_adapter are created but unused officially
TUNED = ("attn.proj.bias", "mlp.fc1.bias", "mlp.fc2.bias", "norm1.bias", "norm2.bias")


def point_peft_states(seed: int = 0) -> tuple[dict, dict, torch.Tensor]:
    """(fine-tuned checkpoint, the pre-trained one it came from, the official bank [C, N]): the pre-trained
    checkpoint shares every frozen tensor; biases, final norm and BatchNorm statistics differ."""
    table = point_mae_finetune(W, PP_DEPTH, CLASSES) + point_peft_shared(W)
    for n in range(PP_DEPTH):
        table += point_peft_block(f"blocks.blocks.{n}", W)
    fine_tuned = random_state(table, seed)
    pretrained = random_state(point_mae_pretrain(W, PP_DEPTH), seed + 1)
    for key in pretrained:
        ours = key.removeprefix("MAE_encoder.")
        tuned = ours.endswith(TUNED) or ours.startswith("norm.") or ours.endswith(("running_mean", "running_var"))
        if key.startswith("MAE_encoder.") and not tuned and not key.endswith("num_batches_tracked"):
            pretrained[key] = fine_tuned[ours].clone()
    bank = torch.randn(W, 20, generator=torch.Generator().manual_seed(seed + 2))
    return fine_tuned, pretrained, bank


def hand_placed_point_prompt(ft: dict, pre: dict, bank: torch.Tensor) -> torch.nn.Module:
    """Base = the pre-trained model; adapter = the official tensors by attribute, the deltas official minus
    pre-trained, the fine-tuned BatchNorm statistics, the bank's columns as rows."""
    config = PointTransformerConfig(
        hidden_size=W,
        num_hidden_layers=PP_DEPTH,
        num_attention_heads=6,
        num_labels=CLASSES,
        fps_skip_sq_norm=1e-3,
        **SIZES,
    )
    base = PointTransformerForClassification(config)
    pre_ours = to_ours({k.removeprefix("MAE_encoder."): v for k, v in pre.items() if k.startswith("MAE_encoder.")})
    base.load_state_dict({**to_ours(ft), **pre_ours}, strict=True)  # pre-trained wherever it has a value
    peft_config = PointPromptConfig(prompt_layers=6, ga_num_anchors=8, ga_k=4, ga_attn_heads=6, bank_size=20)
    model = get_peft_model(base, peft_config)
    tuner, encoder = model.base_model, model.get_base_model().point_transformer
    with torch.no_grad():
        for n in range(PP_DEPTH):
            layer, b = encoder.encoder.layers[n], f"blocks.blocks.{n}"
            if n < 6:
                tokens = layer.point_prompt_tokens["default"]
                tokens.embedding.copy_(ft[f"{b}.prompt_embeddings"])
                for ours, theirs in ((tokens.enhance.down, "ln1"), (tokens.enhance.up, "ln2")):
                    ours.weight.copy_(ft[f"{b}.cp_adapter.{theirs}.weight"])
                    ours.bias.copy_(ft[f"{b}.cp_adapter.{theirs}.bias"])
            for adapter, official in (
                (layer.point_prompt_mlp["default"], "adapter"),
                (layer.point_prompt_out["default"], "adapter1"),
            ):
                for ours, theirs in ((adapter.down, "ln1"), (adapter.up, "ln2")):
                    ours.weight.copy_(ft[f"{b}.{official}.{theirs}.weight"])
                    ours.bias.copy_(ft[f"{b}.{official}.{theirs}.bias"])
            bn = layer.point_prompt_ga_norm["default"]
            for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
                getattr(bn, name).copy_(ft[f"{b}.out_transform.0.{name}"])
            deltas = layer.point_prompt_bias["default"]
            for field, official in zip(("proj", "fc1", "fc2", "norm1", "norm2"), TUNED):
                getattr(deltas, field).copy_(ft[f"{b}.{official}"] - pre[f"MAE_encoder.{b}.{official}"])
        final = encoder.norm.point_prompt_norm["default"]
        final.weight.copy_(ft["norm.weight"] - pre["MAE_encoder.norm.weight"])
        final.bias.copy_(ft["norm.bias"] - pre["MAE_encoder.norm.bias"])
        geometry = tuner.point_prompt_geometry["default"]
        geometry.norm.weight.copy_(ft["blocks.norm3.weight"])
        geometry.norm.bias.copy_(ft["blocks.norm3.bias"])
        geometry.attn.qkv.weight.copy_(ft["blocks.attn1.qkv.weight"])
        geometry.attn.out.weight.copy_(ft["blocks.attn1.proj.weight"])
        geometry.attn.out.bias.copy_(ft["blocks.attn1.proj.bias"])
        tuner.point_prompt_coords["default"].copy_(ft["prompt_cor"])
        tuner.point_prompt_bank["default"].copy_(bank.T)
        for conv in ("first_conv", "second_conv"):
            stats = getattr(encoder.embeddings.patch_embeddings, conv)[1]
            stats.point_prompt_bn_running_mean["default"].copy_(ft[f"encoder.{conv}.1.running_mean"])
            stats.point_prompt_bn_running_var["default"].copy_(ft[f"encoder.{conv}.1.running_var"])
    return model.eval()


def test_point_prompt_converts_and_computes_like_hand_placed(tmp_path):
    ft, pre, bank = point_peft_states()
    ckpt = checkpoint(ft)
    torch.save(ckpt, tmp_path / "ckpt-best.pth")
    torch.save(checkpoint(pre), tmp_path / "pretrain.pth")
    torch.save(bank, tmp_path / "train_f_pos_shape_scan.pt")
    yaml = write_yaml(tmp_path / "finetune_scan_hardest.yaml", "PointTransformer_best", depth=PP_DEPTH)
    converted = convert_point_prompt_checkpoint(
        tmp_path / "ckpt-best.pth",
        pretrained=tmp_path / "pretrain.pth",
        memory_bank=tmp_path / "train_f_pos_shape_scan.pt",
        official_config=yaml,
        output_dir=tmp_path / "out",
    )
    report = converted.report
    assert_every_key_accounted(report, ckpt)
    unused = {f"module.blocks.blocks.6.{k}" for k in ("prompt_embeddings", "cp_adapter.ln1.weight")}
    assert unused <= set(report.dropped) and "used only in blocks 0-5" in report.dropped[unused.pop()]
    assert all(f"module.blocks.blocks.{n}.ad_gate" in report.dropped for n in range(PP_DEPTH))
    assert "official minus pre-trained" in report.used["module.blocks.blocks.3.mlp.fc2.bias"]
    model = reload(tmp_path / "out")
    reference = hand_placed_point_prompt(ft, pre, bank)
    pts = cloud(seed=5)
    with torch.no_grad():
        torch.testing.assert_close(model(points=pts).logits, reference(points=pts).logits, atol=0, rtol=0)
    base = PointTransformerForClassification.from_pretrained(tmp_path / "out" / "base")
    bias = "point_transformer.encoder.layers.2.attn.proj.bias"
    assert torch.equal(base.state_dict()[bias], pre["MAE_encoder.blocks.blocks.2.attn.proj.bias"])
    config = json.loads((tmp_path / "out" / "adapter" / "adapter_config.json").read_text())
    assert (config["prompt_layers"], config["ga_k"], config["ga_num_anchors"], config["bank_size"]) == (6, 4, 8, 20)
    assert "§6.3" in (tmp_path / "out" / "adapter" / "README.md").read_text()


def test_point_prompt_needs_pretrained_and_says_when_the_bank_is_missing():
    ft, pre, _ = point_peft_states(seed=3)
    with pytest.raises(ValueError, match=r"--pretrained"):
        convert_point_prompt_checkpoint(checkpoint(ft), **SIZES)
    converted = convert_point_prompt_checkpoint(checkpoint(ft), pretrained=checkpoint(pre), **SIZES)
    assert "no memory bank" in converted.report.summary()
    assert any("build_memory_bank" in d for d in converted.deviations)
    with pytest.raises(ValueError, match="build_memory_bank"):
        converted.model(points=cloud(batch=2))


# ------------------------------------------------------------------------------------------------------- Any2Point
SW, TOKENS, A2P_RANK, VIEWS = 48, 96, 6, 6  # source width, tokenizer width (official 768), rank, views
SPEED = {"tokenizer_groups": [128, 64, 32], "knn_k": 16}  # smaller than the official 512/256/128 and 64-81 neighbours


def tiny_source(kind: str, bias_kv: bool = True) -> torch.nn.Module:
    from transformers import CLIPTextConfig, CLIPTextModel, Dinov2Config, Dinov2Model

    from hf_point_peft.models.imagebind_audio import ImageBindAudioConfig, ImageBindAudioModel

    torch.manual_seed(11)
    sizes = {"hidden_size": SW, "intermediate_size": 4 * SW, "num_hidden_layers": 2, "num_attention_heads": 4}
    if kind == "clip":
        config = CLIPTextConfig(**sizes, max_position_embeddings=77, vocab_size=100, bos_token_id=0, eos_token_id=1)
        model = CLIPTextModel(config)
    elif kind == "dinov2":
        model = Dinov2Model(Dinov2Config(**sizes, image_size=56, patch_size=14))
        for layer in model.encoder.layer:  # LayerScale away from its constant init, so a mix-up shows
            layer.layer_scale1.lambda1.data.uniform_(0.5, 1.5)
            layer.layer_scale2.lambda1.data.uniform_(0.5, 1.5)
    else:
        model = ImageBindAudioModel(ImageBindAudioConfig(**sizes, num_mel_bins=32, target_length=36))
        if not bias_kv:  # the same weights without the learned key / value tokens, as the official audio runs
            plain = ImageBindAudioModel(
                ImageBindAudioConfig(**sizes, num_mel_bins=32, target_length=36, add_bias_kv=False)
            )
            plain.load_state_dict(
                {k: v for k, v in model.state_dict().items() if "bias_k" not in k and "bias_v" not in k}
            )
            model = plain
    return model.eval()


def any2point_state(kind: str, dataset: str, seed: int = 0) -> dict:
    layers = "resblocks" if kind == "clip" else "blocks"
    table = any2point_adapter(layers, SW, 2, A2P_RANK, VIEWS, "1d" if kind == "clip" else "2d", TOKENS)
    table += openpoints_head(SW, CLASSES) if dataset == "scanobjectnn" else head("cls_head_finetune", 2 * SW, CLASSES)
    state = {**random_state(table, seed), **source_layers_official(tiny_source(kind), kind)}
    if dataset == "scanobjectnn":  # openpoints' BaseCls: the point ViT under `encoder.`
        state = {(k if k.startswith("prediction.") else f"encoder.{k}"): v for k, v in state.items()}
    return state


def hand_placed_any2point(state: dict, kind: str, dataset: str) -> torch.nn.Module:
    """The source + Any2Point with the paper's settings for this run and the official tensors placed by hand."""
    sonn = dataset == "scanobjectnn"
    st = {k.removeprefix("encoder."): v for k, v in state.items()}
    extra = {"audio_grid_layout": "official_19x12"} if kind == "audio" else {}
    if kind != "clip":
        extra["pe_2d_official_reshape"] = True
    paper = {"clip": "clip", "dinov2": "dinov2", "audio": "audio"}[kind]
    config = Any2PointConfig.from_paper(
        paper,
        dataset,
        num_labels=CLASSES,
        adapter_rank=A2P_RANK,
        num_views=VIEWS,
        local_attn_dim=12,
        tokenizer_width=TOKENS,
        final_norm_eps=1e-6 if sonn else 1e-5,
        **SPEED,
        **extra,
    )
    model = get_peft_model(tiny_source(kind, bias_kv=False), config)
    tuner = model.base_model
    with torch.no_grad():
        tokenizer = tuner.any2point_tokenizer["default"]
        tok = {k.removeprefix("patch_embed.EncP."): v for k, v in st.items() if k.startswith("patch_embed.")}
        ours = {"raw.0.weight": tok["raw_point_embed.net.0.weight"]}
        ours.update(
            {
                f"raw.1.{k}": tok[f"raw_point_embed.net.1.{k}"]
                for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
            }
        )
        for key, value in tok.items():
            if key.startswith("LGA_list."):
                _, stage, _, block, rest = key.split(".", 4)
                ours[f"stages.{stage}.blocks.{block}.{rest}"] = value.squeeze(-1) if value.dim() == 4 else value
        tokenizer.load_state_dict(ours, strict=True)
        tuner.any2point_proj["default"].load_state_dict({"weight": st["proj.weight"], "bias": st["proj.bias"]})
        tuner.any2point_cls["default"].token.copy_(st["cls_token"])
        tuner.any2point_cls["default"].position.copy_(st["cls_pos"])
        for v in range(VIEWS):
            attn = tuner.any2point_local_attn["default"][v]
            attn.qkv.weight.copy_(st[f"attn1.{v}.qkv.weight"])
            attn.qkv.bias.copy_(st[f"attn1.{v}.qkv.bias"])
            attn.out.weight.copy_(st[f"attn1.{v}.proj.weight"])
            attn.out.bias.copy_(st[f"attn1.{v}.proj.bias"])
            tuner.any2point_view_norm["default"][v].load_state_dict(
                {"weight": st[f"norm3.{v}.weight"], "bias": st[f"norm3.{v}.bias"]}
            )
        tuner.any2point_final_norm["default"].load_state_dict({"weight": st["norm.weight"], "bias": st["norm.bias"]})
        head_ = tuner.any2point_head["default"]
        bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
        if sonn:  # official input [max; cls], ours [cls; max]
            w = st["prediction.head.0.0.weight"]
            head_[0].weight.copy_(torch.cat([w[:, SW:], w[:, :SW]], dim=1))
            head_[1].load_state_dict({k: st[f"prediction.head.0.1.{k}"] for k in bn})
            head_[4].weight.copy_(st["prediction.head.2.0.weight"])
            head_[5].load_state_dict({k: st[f"prediction.head.2.1.{k}"] for k in bn})
            head_[8].load_state_dict({k: st[f"prediction.head.4.0.{k}"] for k in ("weight", "bias")})
        else:  # biased linears: the bias moves into the next BatchNorm's running mean
            for lin, norm_ in ((0, 1), (4, 5)):
                head_[lin].weight.copy_(st[f"cls_head_finetune.{lin}.weight"])
                stats = {k: st[f"cls_head_finetune.{norm_}.{k}"] for k in bn}
                stats["running_mean"] = stats["running_mean"] - st[f"cls_head_finetune.{lin}.bias"]
                head_[norm_].load_state_dict(stats)
            head_[8].load_state_dict({k: st[f"cls_head_finetune.8.{k}"] for k in ("weight", "bias")})
        layers = model.get_base_model().encoder.layer if kind == "dinov2" else model.get_base_model().encoder.layers
        prefix = "resblocks" if kind == "clip" else "blocks"
        for n, layer in enumerate(layers):
            b = f"{prefix}.{n}"
            layer.any2point_bottleneck["default"].down.load_state_dict(
                {p: st[f"{b}.adapter.ln1.{p}"] for p in ("weight", "bias")}
            )
            layer.any2point_bottleneck["default"].up.load_state_dict(
                {p: st[f"{b}.adapter.ln2.{p}"] for p in ("weight", "bias")}
            )
            norms = layer.any2point_norms["default"]
            norms.voxel.load_state_dict({k: st[f"{b}.out_transform_3d.0.{k}"] for k in bn})
            for v in range(VIEWS):
                view = f"{b}.out_transform_{'1d' if kind == 'clip' else '2d'}.{v}.0"
                norms.views[v].load_state_dict({k: st[f"{view}.{k}"] for k in bn})
    return model.eval()


@pytest.mark.parametrize(
    "kind,dataset", [("clip", "scanobjectnn"), ("dinov2", "modelnet40"), ("audio", "scanobjectnn")]
)
def test_any2point_converts_and_computes_like_hand_placed(kind, dataset, tmp_path):
    state = any2point_state(kind, dataset)
    ckpt = checkpoint(state, wrapper="model" if dataset == "scanobjectnn" else "base_model")
    torch.save(ckpt, tmp_path / "ckpt_best.pth")
    tiny_source(kind).save_pretrained(tmp_path / "source")
    converted = convert_any2point_checkpoint(
        tmp_path / "ckpt_best.pth", source=tmp_path / "source", method_options=SPEED, output_dir=tmp_path / "out"
    )
    report = converted.report
    assert set(report.used) == set(ckpt["model" if dataset == "scanobjectnn" else "base_model"])
    assert not report.dropped and not report.unrecognised
    from transformers import AutoModel

    model = PeftModel.from_pretrained(
        AutoModel.from_pretrained(tmp_path / "out" / "base"), tmp_path / "out" / "adapter"
    )
    model.eval()
    reference = hand_placed_any2point(state, kind, dataset)
    pts = cloud(batch=2, n=256, seed=7)
    with torch.no_grad():
        torch.testing.assert_close(model(points=pts).logits, reference(points=pts).logits, atol=0, rtol=0)
    config = json.loads((tmp_path / "out" / "adapter" / "adapter_config.json").read_text())
    assert config["pe_2d_official_reshape"] == (kind != "clip") and config["init_weights"] is False
    assert config["final_norm_eps"] == (1e-6 if dataset == "scanobjectnn" else 1e-5)
    if kind == "audio":
        assert config["audio_grid_layout"] == "official_19x12"
        assert AutoModel.from_pretrained(tmp_path / "out" / "base").config.add_bias_kv is False
    card = (tmp_path / "out" / "adapter" / "README.md").read_text()
    assert "converted from an official checkpoint" in card and ("batch_first=False" in card) == (kind == "clip")


def test_any2point_reads_the_official_yaml(tmp_path):
    """The ScanObjectNN folders' yaml (`model.encoder_args`, `model.cls_args`) sets what the tensors cannot."""
    state = any2point_state("clip", "scanobjectnn", seed=2)
    encoder = f"embed_dim: {SW}\n    depth: 2\n    num_heads: 4\n    global_feat: max,cls\n    patchknn: 16\n"
    encoder += (
        f"    norm_args:\n      norm: 'ln'\n      eps: 1.0e-6\n    adapter_args:\n      adapter_dim: {A2P_RANK}\n"
    )
    yaml = tmp_path / "Any2Point.yaml"
    body = f"model:\n  NAME: BaseCls\n  encoder_args:\n    NAME: PointViT\n    {encoder}    attn1d_dim: 0\n"
    yaml.write_text(body + f"  cls_args:\n    NAME: ClsHead\n    num_classes: {CLASSES}\n    mlps: [256, 256]\n")
    speed = {"tokenizer_groups": SPEED["tokenizer_groups"]}
    converted = convert_any2point_checkpoint(
        checkpoint(state, "model"), source=tiny_source("clip"), official_config=yaml, method_options=speed
    )
    config = converted.model.peft_config["default"]
    assert (config.knn_k, config.adapter_rank, config.final_norm_eps) == (16, A2P_RANK, 1e-6)
    assert "knn_k=16 from the official config" in converted.report.summary()
    yaml.write_text(yaml.read_text().replace(f"adapter_dim: {A2P_RANK}", "adapter_dim: 16"))  # another run's yaml
    with pytest.raises(ValueError, match="adapter_rank=16.*tensors say adapter_rank=6"):
        convert_any2point_checkpoint(checkpoint(state, "model"), source=tiny_source("clip"), official_config=yaml)


def test_any2point_needs_the_source_it_was_trained_on():
    state = any2point_state("dinov2", "modelnet40", seed=1)
    with pytest.raises(ValueError, match="--source-model"):
        convert_any2point_checkpoint(checkpoint(state))
    with pytest.raises(ValueError, match="layers are dinov2's, but --source-model is a clip_text_model"):
        convert_any2point_checkpoint(checkpoint(state), source=tiny_source("clip"), method_options=SPEED)
    state["blocks.1.mlp.fc2.weight"] = state["blocks.1.mlp.fc2.weight"] + 1e-3
    with pytest.raises(ValueError, match=r"differ from --source-model.*blocks\.1\.mlp\.fc2\.weight"):
        convert_any2point_checkpoint(checkpoint(state), source=tiny_source("dinov2"), method_options=SPEED)


def test_any2point_official_2d_lookup_is_the_scrambled_reshape():
    """pe_2d(official_reshape=True) reads, per sample and view, the [W, G] block of the intended lookup as [G, W]
    (a reshape, linear: the same holds for the mean over views); the cells do not change."""
    from hf_point_peft.tuners.any2point.projection import pe_2d

    grid = torch.randn(4, 5, 8, generator=torch.Generator().manual_seed(0))
    centres = torch.randn(2, 6, 3, generator=torch.Generator().manual_seed(1)) * 0.3
    for views in (1, 3):
        clean = pe_2d(centres, grid, -1.4, views, 16, 16.0)
        scrambled = pe_2d(centres, grid, -1.4, views, 16, 16.0, official_reshape=True)
        torch.testing.assert_close(scrambled.pe, clean.pe.transpose(1, 2).reshape(2, 6, 8), atol=1e-6, rtol=1e-6)
        assert not torch.allclose(scrambled.pe, clean.pe) and torch.equal(scrambled.cells, clean.cells)


# ---------------------------------------------------------------------------------------------------- command line
def test_cli_converts_each_method(tmp_path, capsys):
    from hf_point_peft.cli import main

    torch.save(checkpoint(pointgst_state(seed=4)), tmp_path / "pgst.pth")
    yaml = write_yaml(tmp_path / "pgst.yaml", rank=RANK, local=8)
    ft, pre, bank = point_peft_states(seed=5)
    torch.save(checkpoint(ft), tmp_path / "ppeft.pth")
    torch.save(checkpoint(pre), tmp_path / "pretrain.pth")
    torch.save(bank, tmp_path / "bank.pt")
    torch.save(checkpoint(any2point_state("clip", "scanobjectnn", seed=6), wrapper="model"), tmp_path / "a2p.pth")
    tiny_source("clip").save_pretrained(tmp_path / "clip")
    sizes = ["--num-groups", "16", "--group-size", "8", "--num-points", "256"]
    speed = ["--method-option", "tokenizer_groups=[128, 64, 32]", "--method-option", "knn_k=16"]
    runs = {
        "pointgst": ["pgst.pth", "--official-config", yaml],
        "point-prompt": [
            "ppeft.pth",
            "--pretrained",
            str(tmp_path / "pretrain.pth"),
            "--memory-bank",
            str(tmp_path / "bank.pt"),
            *sizes,
        ],
        "any2point": ["a2p.pth", "--source-model", str(tmp_path / "clip"), *speed],
    }
    for method, args in runs.items():
        out = tmp_path / f"out-{method}"
        assert main(["convert", "--from", method, str(tmp_path / args[0]), "--out", str(out), *args[1:]]) == 0
        printed = capsys.readouterr().out
        assert "tensors used" in printed and "deliberate deviations" in printed and "wrote" in printed
        assert {"adapter_config.json", "adapter_model.safetensors", "README.md", "conversion_report.txt"} <= {
            p.name for p in (out / "adapter").iterdir()
        }
        assert (out / "base" / "config.json").is_file()
        assert f"convert --from {method}" in (out / "adapter" / "README.md").read_text()  # the command is recorded

    assert (
        main(["convert", "--from", "point-prompt", str(tmp_path / "ppeft.pth"), "--out", str(tmp_path / "x"), *sizes])
        == 2
    )
    assert "--pretrained" in capsys.readouterr().err
    bad = [
        "convert",
        "--from",
        "pointgst",
        str(tmp_path / "pgst.pth"),
        "--out",
        str(tmp_path / "x"),
        "--memory-bank",
        "b",
    ]
    assert main(bad) == 2 and "--memory-bank is for --from point-prompt" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
