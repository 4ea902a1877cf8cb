"""Official checkpoint layouts -> HF models: every key accounted for, shapes checked, same outputs as the official
forward (re-stated in tests/official_reference.py), and the mapping inverts."""

import pytest
import torch
from official_reference import OfficialPointGPT, OfficialPointMAE, OfficialPointMAEPretrain

from hf_point_peft import (
    PointGPTForClassification,
    PointTransformerForClassification,
    PointTransformerForMaskedModeling,
)
from hf_point_peft.models.point_gpt.convert_point_gpt import convert_point_gpt_checkpoint, export_point_gpt_state_dict
from hf_point_peft.models.point_transformer.convert_point_transformer import (
    convert_point_transformer_checkpoint,
    export_point_transformer_state_dict,
)

SMALL = {"num_groups": 16, "group_size": 8, "num_points": 256}


def randomise_batchnorm(model: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)


def official_checkpoint(model: torch.nn.Module, prefix: str = "", ddp: bool = True) -> dict:
    """The official save format: {'base_model': state_dict} with DataParallel's `module.` prefix."""
    state = {("module." if ddp else "") + prefix + k: v.clone() for k, v in model.state_dict().items()}
    return {"base_model": state, "epoch": 3, "metrics": {"acc": 0.5}}


def cloud(batch=3, n=256, seed=1):
    g = torch.Generator().manual_seed(seed)
    pts = torch.randn(batch, n, 3, generator=g) * 0.5
    pts[:, 0] = 0.0  # an origin point: the official FPS still starts there
    pts[:, 5] = 0.01  # |p|^2 < 1e-3: the official FPS never picks it later
    return pts


@pytest.mark.parametrize("source", ["point-mae", "act", "recon"])
def test_finetuned_checkpoint_computes_like_official(source):
    torch.manual_seed(0)
    official = OfficialPointMAE(depth=2, cls_dim=5, **{"num_group": 16, "group_size": 8})
    randomise_batchnorm(official)
    official.eval()
    extra = {"num_labels": 5} if source == "recon" else {}  # ReCon's head is dropped: a new head needs its classes
    model, report = convert_point_transformer_checkpoint(official_checkpoint(official), source, **SMALL, **extra)
    assert isinstance(model, PointTransformerForClassification)
    if source == "recon":  # ReCon's head reads 4 tokens: dropped with a reason, then freshly initialised
        assert all(k.startswith("module.cls_head_finetune") for k in report.dropped)
        return
    assert not report.unrecognised and not report.dropped and not report.missing
    assert len(report.used) == len(official.state_dict())
    pts = cloud()
    with torch.no_grad():
        torch.testing.assert_close(model(points=pts).logits, official(pts), atol=2e-5, rtol=1e-4)


def test_point_bert_layout_and_head():
    torch.manual_seed(1)
    official = OfficialPointMAE(depth=2, cls_dim=4, encoder_dims=256, bert_head=True, num_group=16, group_size=8)
    randomise_batchnorm(official)
    official.eval()
    ckpt = official_checkpoint(official, prefix="transformer_q.")
    extra = {
        "module.transformer_q.cls_head.0.weight": torch.zeros(8, 384),
        "module.transformer_q.lm_head.weight": torch.zeros(8192, 384),
        "module.transformer_k.norm.weight": torch.zeros(384),
        "module.dvae.encoder.first_conv.0.weight": torch.zeros(128, 3, 1),
        "module.queue": torch.zeros(256, 100),
        "module.queue_ptr": torch.zeros(1, dtype=torch.long),
    }
    ckpt["base_model"].update(extra)
    model, report = convert_point_transformer_checkpoint(ckpt, "point-bert", **SMALL)
    assert model.config.encoder_dims == 256 and model.config.classifier_hidden_sizes == [256]
    assert not model.config.classifier_batch_norm and model.config.label_smoothing == 0.2
    assert set(report.dropped) == set(extra) and not report.unrecognised and not report.missing
    pts = cloud(seed=2)
    with torch.no_grad():
        torch.testing.assert_close(model(points=pts).logits, official(pts), atol=2e-5, rtol=1e-4)


def test_pretrained_checkpoint_both_tasks():
    torch.manual_seed(2)
    official = OfficialPointMAEPretrain(depth=2, decoder_depth=2, num_group=16, group_size=8)
    randomise_batchnorm(official)
    official.eval()
    ckpt = official_checkpoint(official)
    cls_model, report = convert_point_transformer_checkpoint(ckpt, "point-mae", num_labels=7, **SMALL)
    decoder_keys = [k for k in ckpt["base_model"] if "MAE_encoder" not in k]
    assert sorted(report.dropped) == sorted(decoder_keys)
    assert all("pre-training decoder" in reason for reason in report.dropped.values())
    assert not report.unrecognised
    # the pre-training checkpoint has no cls token and no head: those are freshly initialised and reported
    assert {k.split(".")[0] for k in report.missing} == {"point_transformer", "classifier"}
    assert all(k.startswith("classifier.") or "cls_embedding" in k for k in report.missing)
    assert cls_model.classifier[-1].out_features == 7

    mm, report = convert_point_transformer_checkpoint(ckpt, "point-mae", task="masked-modeling", **SMALL)
    assert isinstance(mm, PointTransformerForMaskedModeling)
    assert not report.dropped and not report.unrecognised and mm.config.group_size == 8
    assert all("cls_embedding" in k for k in report.missing)
    pts = cloud(seed=3)
    mask = torch.zeros(3, 16, dtype=torch.bool)
    mask[:, torch.randperm(16, generator=torch.Generator().manual_seed(0))[:9]] = True
    with torch.no_grad():
        torch.testing.assert_close(mm(points=pts, bool_masked_pos=mask).loss, official(pts, mask), atol=1e-5, rtol=1e-4)


def test_pointgpt_checkpoint_computes_like_official():
    torch.manual_seed(3)
    official = OfficialPointGPT(depth=2, cls_dim=6, num_group=16, group_size=8)
    randomise_batchnorm(official)
    official.eval()
    ckpt = official_checkpoint(official)
    ckpt["base_model"]["module.norm.weight"] = torch.ones(384)  # unused in the official forward
    model, report = convert_point_gpt_checkpoint(ckpt, generator_num_hidden_layers=0, **SMALL)
    assert isinstance(model, PointGPTForClassification) and model.generator is None
    assert list(report.dropped) == ["module.norm.weight"] and not report.unrecognised and not report.missing
    pts = cloud(seed=4)
    with torch.no_grad():
        torch.testing.assert_close(model(points=pts).logits, official(pts), atol=3e-5, rtol=1e-4)


def test_pretrained_pointgpt_prefix_and_generator():
    model = PointGPTForClassification(
        PointGPTForClassification.config_class.from_size(
            "S", num_hidden_layers=2, generator_num_hidden_layers=1, num_labels=3, **SMALL
        )
    )
    official = export_point_gpt_state_dict(model)
    assert "blocks.layers.1.attn.in_proj_weight" in official and "generator_blocks.layers.0.mlp.2.bias" in official
    assert "generator_blocks.increase_dim.0.weight" in official
    pretrain = {"GPT_Transformer." + k: v for k, v in official.items() if "cls" not in k}
    converted, report = convert_point_gpt_checkpoint({"base_model": pretrain}, num_labels=3, **SMALL)
    assert converted.config.generator_num_hidden_layers == 1 and converted.config.group_size == 8
    assert not report.unrecognised and not report.dropped
    assert all(("cls" in k) or k.startswith("classifier") for k in report.missing)
    for key, tensor in converted.state_dict().items():
        if key not in report.missing:
            assert torch.equal(tensor, model.state_dict()[key]), key


def test_export_inverts_conversion():
    model = PointTransformerForClassification(
        PointTransformerForClassification.config_class(num_hidden_layers=2, num_labels=4, **SMALL)
    )
    official = export_point_transformer_state_dict(model)
    assert "blocks.blocks.1.attn.qkv.weight" in official and "cls_head_finetune.8.bias" in official
    back, report = convert_point_transformer_checkpoint(official, "point-mae", **SMALL)
    assert not report.missing and not report.unrecognised
    for key, tensor in model.state_dict().items():
        assert torch.equal(back.state_dict()[key], tensor), key


def test_shape_mismatch_names_key_and_shapes():
    model = PointTransformerForClassification(
        PointTransformerForClassification.config_class(num_hidden_layers=2, num_labels=4, **SMALL)
    )
    official = export_point_transformer_state_dict(model)
    official["blocks.blocks.1.mlp.fc1.weight"] = torch.zeros(100, 384)
    with pytest.raises(ValueError, match=r"blocks\.blocks\.1\.mlp\.fc1\.weight.*\(100, 384\).*\(1536, 384\)"):
        convert_point_transformer_checkpoint(official, "point-mae", **SMALL)


def test_unrecognised_keys_are_reported_not_loaded():
    model = PointTransformerForClassification(
        PointTransformerForClassification.config_class(num_hidden_layers=1, num_labels=4, **SMALL)
    )
    official = export_point_transformer_state_dict(model)
    official["some_new_branch.weight"] = torch.zeros(3)
    _, report = convert_point_transformer_checkpoint(official, "point-mae", **SMALL)
    assert report.unrecognised == ["some_new_branch.weight"]
    assert "unrecognised" in report.summary()


def test_non_tensor_checkpoint_and_wrong_family(tmp_path):
    with pytest.raises(FileNotFoundError):
        convert_point_transformer_checkpoint(tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="not a point-mae encoder"):
        convert_point_transformer_checkpoint({"base_model": {"x": torch.zeros(1)}})
    with pytest.raises(ValueError, match="not a PointGPT"):
        convert_point_gpt_checkpoint({"base_model": {"x": torch.zeros(1)}})
    with pytest.raises(ValueError, match="unknown source"):
        convert_point_transformer_checkpoint({"norm.weight": torch.zeros(1)}, "pointnet")


def test_convert_saves_folder_that_reloads(tmp_path):
    torch.manual_seed(5)
    official = OfficialPointMAE(depth=1, cls_dim=3, num_group=16, group_size=8)
    official.eval()
    path = tmp_path / "ckpt.pth"
    torch.save(official_checkpoint(official), path)
    model, _ = convert_point_transformer_checkpoint(path, "point-mae", output_dir=tmp_path / "hf", **SMALL)
    assert (tmp_path / "hf" / "model.safetensors").is_file() and (tmp_path / "hf" / "conversion_report.txt").is_file()
    reloaded = PointTransformerForClassification.from_pretrained(tmp_path / "hf").eval()
    pts = cloud(seed=6)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(points=pts).logits, model(points=pts).logits, atol=0, rtol=0)


def test_cli_convert(tmp_path, capsys):
    from hf_point_peft.cli import main

    torch.manual_seed(6)
    official = OfficialPointGPT(depth=1, cls_dim=3, num_group=16, group_size=8)
    path = tmp_path / "gpt.pth"
    torch.save(official_checkpoint(official), path)
    code = main(
        [
            "convert",
            "--from",
            "pointgpt",
            str(path),
            "--out",
            str(tmp_path / "hf"),
            "--no-generator",
            "--num-groups",
            "16",
            "--group-size",
            "8",
            "--num-points",
            "256",
        ]
    )
    assert code == 0
    assert "tensors used" in capsys.readouterr().out
    reloaded = PointGPTForClassification.from_pretrained(tmp_path / "hf").eval()
    official.eval()
    pts = cloud(seed=7)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(points=pts).logits, official(pts), atol=3e-5, rtol=1e-4)
    assert main(["convert", "--from", "point-mae", str(tmp_path / "nope.pth"), "--out", str(tmp_path / "x")]) == 2
    assert "not found" in capsys.readouterr().err


def test_decoder_heads_of_an_unreleased_width_name_the_way_to_give_them(tmp_path, capsys):
    """`convert` has no flag for the decoder's heads: the error told command-line users to pass one."""
    from official_layouts import checkpoint, point_mae_pretrain, random_state

    from hf_point_peft.cli import main as cli

    path = tmp_path / "mae.pth"
    torch.save(checkpoint(random_state(point_mae_pretrain(48, 2), 0)), path)
    args = ["--num-groups", "16", "--num-points", "128", "--num-heads", "4", "--task", "masked-modeling"]
    assert cli(["convert", "--from", "point-mae", str(path), "--out", str(tmp_path / "out"), *args]) == 2
    error = capsys.readouterr().err
    assert "decoder_num_attention_heads cannot be read" in error and "Pass --official-config" in error
    assert "the command line has no flag for decoder_num_attention_heads" in error and "heads=N" not in error
