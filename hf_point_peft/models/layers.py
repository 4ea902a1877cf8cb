"""Building blocks shared by the point model families: drop path, the mini-PointNet patch encoder, attention, MLP,
the official classification head and the grouping step."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init
from transformers.activations import ACT2FN

from ..geometry import group_points, validate_points

__all__ = [
    "BatchNorm1d",
    "ClassificationHead",
    "ClsEmbedding",
    "DropPath",
    "FeedForward",
    "MiniPointNet",
    "SelfAttention",
    "group_cloud",
    "synced_batch_norm",
]


def _all_reduce(t: torch.Tensor) -> torch.Tensor:
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return t
    if t.requires_grad:
        from torch.distributed.nn.functional import all_reduce

        return all_reduce(t)
    t = t.clone()
    dist.all_reduce(t)
    return t


def synced_batch_norm(
    x: torch.Tensor,
    running_mean: torch.Tensor | None,
    running_var: torch.Tensor | None,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    momentum: float,
    eps: float,
) -> torch.Tensor:
    """Training-mode batch norm whose statistics cover the whole global batch when torch.distributed is initialised
    (any backend, CPU included; torch's SyncBatchNorm is GPU-only). Two passes (mean, then centred squares) keep
    the variance accurate; running statistics get the unbiased variance, as in `nn.BatchNorm1d`."""
    dims = [0, *range(2, x.dim())]
    shape = [1, x.shape[1]] + [1] * (x.dim() - 2)
    local = torch.cat([x.sum(dims), x.new_tensor([x.numel() / x.shape[1]])])
    total = _all_reduce(local)
    count = total[-1]
    mean = total[:-1] / count
    centred = x - mean.view(shape)
    var = _all_reduce(centred.square().sum(dims)) / count
    if running_mean is not None and running_var is not None:
        with torch.no_grad():
            running_mean.mul_(1 - momentum).add_(mean.detach(), alpha=momentum)
            unbiased = var.detach() * count / (count - 1).clamp_min(1)
            running_var.mul_(1 - momentum).add_(unbiased, alpha=momentum)
    out = centred * torch.rsqrt(var + eps).view(shape)
    if weight is not None:
        out = out * weight.view(shape)
    if bias is not None:
        out = out + bias.view(shape)
    return out


class BatchNorm1d(nn.BatchNorm1d):
    """`nn.BatchNorm1d` that, with `sync_stats = True` (set by the training loop for multi-process runs), takes its
    training statistics over all processes, so N processes train exactly like one with the same global batch."""

    sync_stats: bool = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.sync_stats and self.training):
            return super().forward(x)
        if self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
        momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
        return synced_batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, momentum, self.eps)


class DropPath(nn.Module):
    """Stochastic depth per sample (identity in eval mode or at rate 0)."""

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = float(drop_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


def _pointwise_mlp(channels: list[int]) -> nn.Sequential:
    """Conv1d(k=1) layers over `channels` with BatchNorm + ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (c_in, c_out) in enumerate(zip(channels[:-1], channels[1:])):
        layers.append(nn.Conv1d(c_in, c_out, 1))
        if i < len(channels) - 2:
            layers += [BatchNorm1d(c_out), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class MiniPointNet(nn.Module):
    """The patch encoder of Point-BERT / Point-MAE / PointGPT: a per-point MLP, max-pool, concat(global, local),
    a second MLP and a final max-pool, turning each neighbourhood [K, C_in] into one token.

    `first_channels` are the widths of the first MLP (e.g. [128, 256], or PointGPT-B/L's [256, 512, 1024]);
    `second_channels` the hidden widths of the second one (e.g. [512] or [2048]). The Sequential indices match the
    official state dicts (`first_conv.0/1/3`, ...).
    """

    def __init__(self, in_channels: int, out_channels: int, first_channels: list[int], second_channels: list[int]):
        super().__init__()
        self.first_conv = _pointwise_mlp([in_channels, *first_channels])
        self.second_conv = _pointwise_mlp([2 * first_channels[-1], *second_channels, out_channels])

    chunk_points = 1 << 15  # points per chunk of the layers after the last BatchNorm (bounds peak memory)

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the weights: inputs are cast to it (float64 points into a float32 model, and so on)."""
        return self.first_conv[0].weight.dtype

    def forward(self, neighbourhoods: torch.Tensor) -> torch.Tensor:
        batch, groups, size, channels = neighbourhoods.shape
        x = neighbourhoods.reshape(batch * groups, size, channels).transpose(1, 2)
        local = self.first_conv(x)
        pooled = local.amax(dim=2, keepdim=True)
        # conv(concat(global, local)) == W_global @ global + W_local @ local: same result without materialising the
        # concatenation, the largest tensor of the tokenizer
        layers = list(self.second_conv)
        fuse = layers[0]
        mid = local.shape[1]
        hidden = F.conv1d(local, fuse.weight[:, mid:])
        del local
        hidden = hidden.add_(F.conv1d(pooled, fuse.weight[:, :mid], fuse.bias))
        rest = layers[1:]
        last_norm = max((i for i, m in enumerate(rest) if isinstance(m, nn.modules.batchnorm._BatchNorm)), default=-1)
        for layer in rest[: last_norm + 1]:  # BatchNorm needs the statistics of the whole batch
            hidden = layer(hidden)
        tail = rest[last_norm + 1 :]
        chunk = max(1, self.chunk_points // size)
        outputs = []
        for part in hidden.split(chunk, dim=0):
            for layer in tail:
                part = F.relu(part) if isinstance(layer, nn.ReLU) else layer(part)
            outputs.append(part.amax(dim=2))
        return torch.cat(outputs, dim=0).reshape(batch, groups, -1)


class ClsEmbedding(nn.Module):
    """The CLS token and its position embedding, one small module so that it can be trained (or listed in
    `modules_to_save`) on its own. Called with the batch size, it returns both expanded to [B, 1, C]."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.token = nn.Parameter(torch.zeros(1, 1, hidden_size))
        self.position = nn.Parameter(torch.zeros(1, 1, hidden_size))

    def forward(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.token.expand(batch_size, -1, -1), self.position.expand(batch_size, -1, -1)


class SelfAttention(nn.Module):
    """Multi-head self-attention with a fused qkv projection (timm layout: `qkv`, `proj`)."""

    def __init__(self, hidden_size: int, num_heads: int, qkv_bias: bool, attention_dropout: float, proj_dropout: float):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size, bias=qkv_bias)
        self.attention_dropout = attention_dropout
        self.proj = nn.Linear(hidden_size, hidden_size)
        self.proj_drop = nn.Dropout(proj_dropout)

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor | None = None, is_causal: bool = False):
        batch, tokens, width = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=attention_mask,
            dropout_p=self.attention_dropout if self.training else 0.0,
            is_causal=is_causal and attention_mask is None,
            scale=self.scale,
        )
        out = out.transpose(1, 2).reshape(batch, tokens, width)
        return self.proj_drop(self.proj(out))


class FeedForward(nn.Module):
    """fc1 -> activation -> dropout -> fc2 -> dropout (timm `Mlp` layout)."""

    def __init__(self, hidden_size: int, intermediate_size: int, hidden_act: str, dropout: float):
        super().__init__()
        self.fc1 = nn.Linear(hidden_size, intermediate_size)
        self.act = ACT2FN[hidden_act]
        self.fc2 = nn.Linear(intermediate_size, hidden_size)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class ClassificationHead(nn.Sequential):
    """The official fine-tuning head: [Linear -> (BatchNorm) -> ReLU -> Dropout] per hidden width -> Linear."""

    def __init__(self, in_features: int, hidden_sizes: list[int], num_labels: int, batch_norm: bool, dropout: float):
        layers: list[nn.Module] = []
        width = in_features
        for hidden in hidden_sizes:
            layers.append(nn.Linear(width, hidden))
            if batch_norm:
                layers.append(BatchNorm1d(hidden))
            layers += [nn.ReLU(inplace=True), nn.Dropout(dropout)]
            width = hidden
        layers.append(nn.Linear(width, num_labels))
        super().__init__(*layers)

    @classmethod
    def from_config(cls, config) -> ClassificationHead:
        """The head of a point classifier config (`classifier_*` fields), on concat(cls, max over patch tokens)."""
        return cls(
            2 * config.hidden_size,
            config.classifier_hidden_sizes,
            config.num_labels,
            config.classifier_batch_norm,
            config.classifier_dropout,
        )


def run_layers(layers: nn.ModuleList, hidden_states: torch.Tensor, output_hidden_states: bool, *args, **kwargs):
    """`hidden_states` through every layer (`layer(hidden_states, *args, **kwargs)`) -> (last output, every layer's
    input and the last output when `output_hidden_states`, else None)."""
    all_hidden = [hidden_states] if output_hidden_states else None
    for layer in layers:
        hidden_states = layer(hidden_states, *args, **kwargs)
        if all_hidden is not None:
            all_hidden.append(hidden_states)
    return hidden_states, (tuple(all_hidden) if all_hidden is not None else None)


def group_cloud(points: torch.Tensor, config, generator: torch.Generator | None = None):
    """Validate `points` against a config and split it into (neighbourhoods [B, G, K, C], centres [B, G, 3]).

    Grouping always runs in float32 (or float64 input precision) outside autocast: FPS and kNN decide discrete
    indices, which must not depend on the mixed-precision setting.
    """
    validate_points(points, min_points=max(config.num_groups, config.group_size), channels=config.num_channels)
    dtype = torch.float64 if points.dtype == torch.float64 else torch.float32
    with torch.autocast(device_type=points.device.type, enabled=False), torch.no_grad():
        neighbourhoods, centres, _ = group_points(
            points.to(dtype),
            config.num_groups,
            config.group_size,
            start=config.fps_start,
            generator=generator,
            skip_sq_norm=config.fps_skip_sq_norm,
        )
    return neighbourhoods, centres


@torch.no_grad()
def init_common_weights(module: nn.Module, std: float) -> bool:
    """The initialisation the model families share (`_init_weights` of each calls it first): truncated-normal
    Linear / convolution weights with zero biases, unit / zero norms with reset BatchNorm statistics, the CLS token
    and its position. Returns whether `module` was one of these."""
    if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
        init.trunc_normal_(module.weight, std=std)
        if module.bias is not None:
            init.zeros_(module.bias)
    elif isinstance(module, (nn.LayerNorm, nn.BatchNorm1d)):
        init.ones_(module.weight)
        init.zeros_(module.bias)
        if isinstance(module, nn.BatchNorm1d):
            init.zeros_(module.running_mean)
            init.ones_(module.running_var)
            init.zeros_(module.num_batches_tracked)
    elif isinstance(module, ClsEmbedding):
        init.trunc_normal_(module.token, std=std)
        init.trunc_normal_(module.position, std=std)
    else:
        return False
    return True


def quick_gelu(x: torch.Tensor) -> torch.Tensor:
    """x * sigmoid(1.702 x): the GELU approximation of CLIP and of the official Point-PEFT / Any2Point adapters."""
    return x * torch.sigmoid(1.702 * x)


def classification_loss(logits: torch.Tensor, labels: torch.Tensor | None, label_smoothing: float):
    """Cross-entropy with a clear error for labels outside [0, num_labels)."""
    if labels is None:
        return None
    labels = labels.reshape(-1).long()
    num_labels = logits.shape[-1]
    if labels.numel() != logits.shape[0]:
        raise ValueError(f"labels must hold one label per sample ({logits.shape[0]}), got shape {tuple(labels.shape)}")
    bad = (labels < 0) | (labels >= num_labels)
    if bool(bad.any()):
        index = int(bad.nonzero()[0, 0])
        raise ValueError(f"label {int(labels[index])} at batch index {index} is outside [0, {num_labels})")
    return F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)
