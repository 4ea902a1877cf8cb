"""What the three adapter converters share.

A fine-tuned checkpoint of a PEFT method holds the backbone and the adapter in one state dict. Each converter builds
the HF base model from the backbone tensors, wraps it the public way (`get_peft_model(base, Config(...))`), copies
the adapter tensors into the adapter modules by attribute path (`OfficialState.place*`), and saves with
`save_pretrained`: the adapter file's key format is peft's and the tuners' business, never written by hand here.
Every official key is used or dropped with a stated reason; a key no rule knows stops the conversion.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..atomic import atomic_directories, write_text_atomic
from ..models.conversion import ConversionReport, load_official_state_dict, missing_tensor, strip_prefixes
from .card import point_load_code, write_conversion_card

__all__ = [
    "ConvertedAdapter",
    "PointMethodConversion",
    "OfficialState",
    "check_frozen_equal",
    "convert_backbone",
    "fill_modules_to_save",
    "place_bn_statistics",
    "backbone_statistics",
    "pretrained_backbone",
    "frozen_keys",
    "BN_STATS",
    "write_converted",
]


@dataclass
class ConvertedAdapter:
    """The result of a conversion: the PEFT model (in eval mode), the report of every key, the written folders
    (None when nothing was written) and the deliberate deviations from the official computation."""

    model: nn.Module
    report: ConversionReport
    adapter_dir: Path | None = None
    base_dir: Path | None = None
    deviations: list[str] = field(default_factory=list)


class OfficialState:
    """An official checkpoint's tensors under their stripped names (`module.` and a model prefix removed), with the
    bookkeeping that every key ends up used or dropped. The report names the original keys."""

    def __init__(self, checkpoint, prefixes: list[str], report: ConversionReport):
        self.raw = load_official_state_dict(checkpoint)
        self.original = strip_prefixes(self.raw, prefixes)  # stripped -> original key
        self._stripped = {original: stripped for stripped, original in self.original.items()}
        self.report = report
        self.pending = set(self.original)

    def __contains__(self, key: str) -> bool:
        return key in self.original

    def __getitem__(self, key: str) -> torch.Tensor:
        if key not in self.original:
            raise missing_tensor(key)
        return self.raw[self.original[key]]

    def __iter__(self):
        return iter(list(self.original))

    def subset(self, predicate: Callable[[str], bool]) -> dict[str, torch.Tensor]:
        """{original key: tensor} of the stripped keys that satisfy `predicate` (e.g. the backbone part)."""
        return {self.original[k]: self.raw[self.original[k]] for k in self.original if predicate(k)}

    def used(self, key: str, where: str) -> torch.Tensor:
        self.pending.discard(key)
        self.report.used[self.original[key]] = where
        return self[key]

    def drop(self, key: str, reason: str) -> None:
        self.pending.discard(key)
        self.report.dropped[self.original[key]] = reason

    def account(self, report: ConversionReport) -> None:
        """Take over what another conversion (the backbone converter) did with some of these keys."""
        for original in [*report.used, *report.dropped]:
            self.pending.discard(self._stripped[original])
        self.report.used.update(report.used)
        self.report.dropped.update(report.dropped)
        self.report.notes += report.notes

    def place(self, key: str, target: torch.Tensor, where: str, transform: Callable | None = None) -> None:
        """Copy the official tensor `key` into `target` (a parameter or buffer of the PEFT model) after checking the
        shape; `transform` maps the official layout to ours (a transpose, a column permutation, ...)."""
        if key not in self.original:
            raise ValueError(f"the checkpoint has no {key!r}, which {where} needs; it is not a complete checkpoint")
        value = self[key]
        if transform is not None:
            value = transform(value)
        if tuple(value.shape) != tuple(target.shape):
            raise ValueError(
                f"checkpoint tensor {self.original[key]!r} has shape {tuple(self[key].shape)} but {where} has shape "
                f"{tuple(target.shape)}; the checkpoint does not fit this configuration"
            )
        with torch.no_grad():
            target.copy_(value.to(device=target.device, dtype=target.dtype))
        self.used(key, where)

    def place_module(
        self,
        prefix: str,
        module: nn.Module,
        where: str,
        rename: Mapping[str, str] | None = None,
        transforms: Mapping[str, Callable] | None = None,
        absent: Mapping[str, str] | None = None,
    ) -> None:
        """Copy every tensor of `module` from `prefix + name` (`rename` maps our names to the official ones).
        `absent` names our tensors the official module does not have, with why zero is their official value
        (e.g. a bias the official layer was built without); they are zeroed and noted."""
        rename, transforms, absent = rename or {}, transforms or {}, absent or {}
        for name, tensor in module.state_dict(keep_vars=True).items():
            official = prefix + rename.get(name, name)
            if name in absent and official not in self.original:
                with torch.no_grad():
                    tensor.zero_()
                note = f"{where}.{name} set to zero: {absent[name]}"
                if note not in self.report.notes:
                    self.report.notes.append(note)
                continue
            self.place(official, tensor, f"{where}.{name}", transforms.get(name))

    def finish(self, what: str) -> None:
        """Refuse a checkpoint with keys no rule knows: an adapter converted without them would not compute what
        the checkpoint computes."""
        if self.pending:
            keys = sorted(self.original[k] for k in self.pending)
            self.report.unrecognised += keys
            shown = ", ".join(keys[:8]) + (f", ... (+{len(keys) - 8} more)" if len(keys) > 8 else "")
            raise ValueError(
                f"{what}: {len(keys)} checkpoint tensors are not understood ({shown}); the converted adapter would not "
                "compute what the checkpoint computes. Is it the layout of the official code this converter reads?"
            )


def check_frozen_equal(
    fine_tuned: Mapping[str, torch.Tensor], pretrained: Mapping[str, torch.Tensor], keys, what: str
) -> None:
    """The tensors the official run kept frozen must be the pre-trained ones; otherwise `pretrained` is not the
    checkpoint this one was fine-tuned from, and deltas or statistics taken from it would be wrong."""
    differ = [k for k in keys if not torch.equal(fine_tuned[k].float(), pretrained[k].float())]
    if differ:
        raise ValueError(
            f"{what}: {len(differ)} tensors the official run keeps frozen differ between the fine-tuned checkpoint and "
            f"--pretrained (e.g. {differ[:4]}): --pretrained is not the checkpoint it was fine-tuned from"
        )


def place_bn_statistics(peft_model: nn.Module, values: Mapping[str, torch.Tensor], adapter: str) -> list[str]:
    """Write the fine-tuned running statistics of the frozen backbone's BatchNorms into the adapter's own copies
    (`<prefix>running_mean[adapter]`, ...), keyed by the base model's names (`...first_conv.1.running_mean`).
    Returns the base-model keys written. The official runs keep the backbone in train() mode, so these statistics
    moved during fine-tuning: they belong to the adapter, not to the base."""
    written = []
    base = peft_model.get_base_model()
    for name, module in base.named_modules():
        if not hasattr(module, "stats_attribute_names"):
            continue
        for stat, attr in zip(("running_mean", "running_var", "num_batches_tracked"), module.stats_attribute_names()):
            key = f"{name}.{stat}"
            target = getattr(module, attr)[adapter]
            if key not in values:
                raise ValueError(f"no fine-tuned value for the BatchNorm statistic {key}")
            with torch.no_grad():
                target.copy_(values[key].to(target.dtype))
            written.append(key)
    return written


def write_converted(
    converted: ConvertedAdapter, output_dir: str | os.PathLike, base: nn.Module | None, card: Callable[[Path], None]
) -> ConvertedAdapter:
    """Write `output_dir/adapter` (adapter_config.json + adapter_model.safetensors through `save_pretrained`, the
    model card written by `card(folder)`, conversion_report.txt) and, when given, `output_dir/base`: the clean base
    model (a copy taken before the adapter was injected) that the adapter's `base_model_name_or_path` names. Each
    folder is written atomically; nothing is written before the conversion has succeeded."""
    output_dir = Path(output_dir)
    report_text = converted.report.full_text()
    outputs = []
    if base is not None:

        def write_base(folder: Path) -> None:
            base.save_pretrained(folder)
            write_text_atomic(folder / "conversion_report.txt", report_text)

        outputs.append((output_dir / "base", write_base))
        converted.base_dir = output_dir / "base"  # named by the adapter's card and config
        for config in converted.model.peft_config.values():
            config.base_model_name_or_path = str(converted.base_dir.resolve())

    def write_adapter(folder: Path) -> None:
        converted.model.save_pretrained(folder)
        card(folder)
        write_text_atomic(folder / "conversion_report.txt", report_text)

    outputs.append((output_dir / "adapter", write_adapter))
    # both folders are checked before either is replaced: a refusal leaves an earlier pair whole
    converted.adapter_dir = atomic_directories(outputs, replace_foreign=False)[-1]
    return converted


# ------------------------------------------------------------------------------------------- point backbones


def convert_backbone(
    state: Mapping[str, torch.Tensor], gpt: bool, official_config, overrides: Mapping, what: str
) -> tuple[nn.Module, ConversionReport]:
    """The HF classifier from the backbone part of a method checkpoint (the family's own converter, so its key
    rules and size checks apply). The head, the cls token and every backbone tensor must be there: a method
    checkpoint converted with freshly initialised weights would not compute what it computed."""
    from ..models.point_gpt.convert_point_gpt import convert_point_gpt_checkpoint
    from ..models.point_transformer.convert_point_transformer import convert_point_transformer_checkpoint

    if gpt:
        model, report = convert_point_gpt_checkpoint(
            state, official_config=official_config, generator_num_hidden_layers=0, **overrides
        )
    else:
        model, report = convert_point_transformer_checkpoint(
            state, "point-mae", official_config=official_config, **overrides
        )
    if report.missing:
        raise ValueError(
            f"{what}: the checkpoint lacks {len(report.missing)} tensors of the model (e.g. {report.missing[:4]}); "
            "a fine-tuned checkpoint holds the whole model"
        )
    return model, report


def _backbone_source(keys) -> str:
    """Which official pre-training code wrote a checkpoint, from its key prefixes."""
    keys = [k.replace("module.", "") for k in keys]
    if any(k.startswith(("GPT_Transformer.", "blocks.sos")) for k in keys):
        return "pointgpt"
    if any(k.startswith(("img_token", "text_token", "img_proj.", "text_proj.")) for k in keys):
        return "recon"
    for prefix, source in (("ACT_encoder.", "act"), ("transformer_q.", "point-bert")):
        if any(k.startswith(prefix) for k in keys):
            return source
    return "point-mae"


def pretrained_backbone(pretrained, config, what: str) -> tuple[dict[str, torch.Tensor], str]:
    """The pre-trained checkpoint the method was fine-tuned from, converted with the fine-tuned model's sizes:
    (its state dict under our keys, the detected source). Its head is not used."""
    from ..models.point_gpt.convert_point_gpt import convert_point_gpt_checkpoint
    from ..models.point_transformer.convert_point_transformer import convert_point_transformer_checkpoint

    raw = load_official_state_dict(pretrained)
    source = _backbone_source(raw)
    sizes = {
        name: getattr(config, name)
        for name in ("num_groups", "group_size", "num_points", "num_labels", "num_attention_heads")
    }
    if (config.model_type == "point_gpt") != (source == "pointgpt"):
        raise ValueError(f"{what}: --pretrained is a {source} checkpoint, the fine-tuned one a {config.model_type}")
    if source == "pointgpt":
        model, _ = convert_point_gpt_checkpoint(raw, generator_num_hidden_layers=0, **sizes)
    else:
        model, _ = convert_point_transformer_checkpoint(raw, source, **sizes)
    return model.state_dict(), source


BN_STATS = ("running_mean", "running_var", "num_batches_tracked")


def _backbone_key(key: str) -> bool:
    """Not the head, the cls token or PointGPT's cls_norm (trained in full by every official method run)."""
    return not key.startswith("classifier.") and "cls_" not in key


def frozen_keys(state: Mapping[str, torch.Tensor], tuned=()) -> list[str]:
    """The base-model keys the official method runs keep frozen: the backbone's, except the BatchNorm statistics
    (which move in train() mode) and the `tuned` keys of a method."""
    return [k for k in state if _backbone_key(k) and not k.endswith(BN_STATS) and k not in tuned]


def backbone_statistics(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Copies of the running statistics of the backbone's BatchNorms (the tokenizer's; not the head's)."""
    return {k: v.clone() for k, v in state.items() if _backbone_key(k) and k.endswith(BN_STATS)}


def fill_modules_to_save(peft_model: nn.Module, adapter: str) -> list[str]:
    """Give the adapter's copies of the modules_to_save (head, cls token, PointGPT's cls_norm) the converted official
    tensors, which the base modules hold; returns the module names."""
    from peft.utils.other import ModulesToSaveWrapper

    names = []
    for name, module in peft_model.get_base_model().named_modules():
        if isinstance(module, ModulesToSaveWrapper) and adapter in module.modules_to_save:
            module.modules_to_save[adapter].load_state_dict(module.original_module.state_dict())
            names.append(name)
    return names


class PointMethodConversion:
    """The steps PointGST and Point-PEFT share on a point backbone: read the checkpoint, convert its backbone part
    (`base`), check it against the pre-trained checkpoint and give the base the pre-trained values of what the run
    changed, wrap it (`inject`), then (`complete`) move the fine-tuned BatchNorm statistics into the adapter, fill
    the modules_to_save copies, refuse leftover keys and write the folders."""

    def __init__(self, checkpoint, source: str, what: str):
        self.checkpoint, self.what = checkpoint, what
        self.report = ConversionReport(source=source)
        self.state = OfficialState(checkpoint, ["base_model."], self.report)
        self.pretrained: dict[str, torch.Tensor] | None = None

    def base(self, method_keys, gpt: bool, official_config, overrides: Mapping, pretrained, tuned=()) -> nn.Module:
        """The HF base from the non-method keys. `tuned`: base keys the run trained in place (Point-PEFT's biases);
        with `pretrained` the base gets the pre-trained values of those and of the BatchNorm statistics, and every
        other backbone tensor is checked equal to the pre-trained one; `self.fine_tuned` keeps the official values."""
        base, backbone_report = convert_backbone(
            self.state.subset(lambda k: k not in method_keys), gpt, official_config, overrides, self.what
        )
        self.state.account(backbone_report)
        self.ours_to_official = {ours: official for official, ours in backbone_report.used.items()}
        own = base.state_dict()
        self.fine_tuned = {**backbone_statistics(own), **{k: own[k].clone() for k in tuned}}
        if pretrained is not None:
            self.pretrained, source = pretrained_backbone(pretrained, base.config, self.what)
            check_frozen_equal(own, self.pretrained, frozen_keys(own, tuned), self.what)
            base.load_state_dict({k: self.pretrained[k] for k in self.fine_tuned}, strict=False)
            changed = "BatchNorm statistics" + (" and the tuned tensors" if tuned else "")
            self.report.notes.append(
                f"--pretrained ({source}): every frozen tensor checked equal; the base has its {changed}, the adapter "
                "the fine-tuned statistics" + (" and the deltas" if tuned else "")
            )
        else:
            self.report.notes.append(
                "no --pretrained: the base keeps the fine-tuned BatchNorm statistics too (the adapter carries its own "
                "copy, so the adapter computes the same either way)"
            )
        self.base_model = base
        return base

    def inject(self, config, adapter_name: str, keep_base: bool) -> nn.Module:
        from peft import get_peft_model

        self.clean_base = copy.deepcopy(self.base_model) if keep_base else None
        self.model = get_peft_model(self.base_model, config, adapter_name=adapter_name)
        return self.model

    def complete(self, adapter_name: str, deviations: list[str], output_dir, card) -> ConvertedAdapter:
        only = " only" if self.pretrained is not None else " (and the base)"
        for key in place_bn_statistics(self.model, self.fine_tuned, adapter_name):
            self.report.used[self.ours_to_official[key]] = f"{key} -> the adapter's BatchNorm statistics{only}"
        for name in fill_modules_to_save(self.model, adapter_name):
            self.report.notes.append(f"{name}: trained in full by the official run; the adapter's copy holds it")
        self.state.finish(self.what)
        self.model.eval()
        converted = ConvertedAdapter(self.model, self.report, deviations=list(deviations))
        if output_dir is None:
            return converted
        card.deviations = converted.deviations
        card.load_code = point_load_code(self.clean_base, output_dir)
        return write_converted(
            converted, output_dir, self.clean_base, lambda folder: write_conversion_card(folder, card, converted)
        )
