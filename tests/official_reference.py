"""Independent re-statements of the official models, with the official module names, for converter tests.

They follow the official forward passes (Point-MAE `PointTransformer`, Point-MAE pre-training `Point_MAE`, PointGPT
`PointTransformer` with `nn.MultiheadAttention` in sequence-first layout) as documented in the research notes, and use
a scalar reference of the pointnet2_ops FPS kernel (start at 0, 1e10 init, points with |p|^2 <= 1e-3 skipped).
Only the state-dict layout and the arithmetic matter here; CUDA ops are replaced by brute force.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def official_fps(xyz: torch.Tensor, n: int) -> torch.Tensor:
    out = []
    for cloud in xyz:
        temp = torch.full((cloud.shape[0],), 1e10)
        valid = (cloud * cloud).sum(-1) > 1e-3
        idx = [0]
        for _ in range(n - 1):
            d = ((cloud - cloud[idx[-1]]) ** 2).sum(-1)
            temp = torch.where(valid, torch.minimum(temp, d), temp)
            scores = torch.where(valid, temp, torch.full_like(temp, -1.0))
            idx.append(int(scores.argmax()) if bool(valid.any()) else 0)
        out.append(idx)
    return torch.tensor(out)


def brute_knn(xyz, centres, k):
    d = ((centres[:, :, None] - xyz[:, None]) ** 2).sum(-1)
    return d.topk(k, dim=-1, largest=False).indices


class Group(nn.Module):
    def __init__(self, num_group, group_size):
        super().__init__()
        self.num_group, self.group_size = num_group, group_size

    def forward(self, xyz):
        idx = official_fps(xyz, self.num_group)
        center = torch.stack([xyz[b, idx[b]] for b in range(xyz.shape[0])])
        knn = brute_knn(xyz, center, self.group_size)
        neighborhood = torch.stack([xyz[b][knn[b]] for b in range(xyz.shape[0])])
        return neighborhood - center.unsqueeze(2), center


class Encoder(nn.Module):
    def __init__(self, encoder_channel):
        super().__init__()
        self.first_conv = nn.Sequential(
            nn.Conv1d(3, 128, 1), nn.BatchNorm1d(128), nn.ReLU(inplace=True), nn.Conv1d(128, 256, 1)
        )
        self.second_conv = nn.Sequential(
            nn.Conv1d(512, 512, 1), nn.BatchNorm1d(512), nn.ReLU(inplace=True), nn.Conv1d(512, encoder_channel, 1)
        )

    def forward(self, point_groups):
        bs, g, n, _ = point_groups.shape
        x = point_groups.reshape(bs * g, n, 3)
        feature = self.first_conv(x.transpose(2, 1))
        feature_global = torch.max(feature, dim=2, keepdim=True)[0]
        feature = torch.cat([feature_global.expand(-1, -1, n), feature], dim=1)
        feature = self.second_conv(feature)
        return torch.max(feature, dim=2, keepdim=False)[0].reshape(bs, g, -1)


class Attention(nn.Module):
    def __init__(self, dim, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(B, N, C))


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, num_heads):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, num_heads)
        self.norm2, self.mlp = nn.LayerNorm(dim), Mlp(dim, 4 * dim)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TransformerEncoder(nn.Module):
    def __init__(self, dim, depth, num_heads):
        super().__init__()
        self.blocks = nn.ModuleList([Block(dim, num_heads) for _ in range(depth)])

    def forward(self, x, pos):
        for block in self.blocks:
            x = block(x + pos)
        return x


class OfficialPointMAE(nn.Module):
    """Point-MAE `PointTransformer` (fine-tuning); `encoder_dims != trans_dim` adds Point-BERT's `reduce_dim`,
    `bert_head` Point-BERT's BN-free head."""

    def __init__(
        self,
        trans_dim=384,
        depth=2,
        num_heads=6,
        num_group=16,
        group_size=8,
        cls_dim=5,
        encoder_dims=None,
        bert_head=False,
    ):
        super().__init__()
        encoder_dims = encoder_dims or trans_dim
        self.group_divider = Group(num_group, group_size)
        self.encoder = Encoder(encoder_dims)
        if encoder_dims != trans_dim:
            self.reduce_dim = nn.Linear(encoder_dims, trans_dim)
        self.cls_token = nn.Parameter(torch.randn(1, 1, trans_dim) * 0.02)
        self.cls_pos = nn.Parameter(torch.randn(1, 1, trans_dim) * 0.02)
        self.pos_embed = nn.Sequential(nn.Linear(3, 128), nn.GELU(), nn.Linear(128, trans_dim))
        self.blocks = TransformerEncoder(trans_dim, depth, num_heads)
        self.norm = nn.LayerNorm(trans_dim)
        if bert_head:
            self.cls_head_finetune = nn.Sequential(
                nn.Linear(trans_dim * 2, 256), nn.ReLU(inplace=True), nn.Dropout(0.5), nn.Linear(256, cls_dim)
            )
        else:
            self.cls_head_finetune = nn.Sequential(
                nn.Linear(trans_dim * 2, 256),
                nn.BatchNorm1d(256),
                nn.ReLU(inplace=True),
                nn.Dropout(0.5),
                nn.Linear(256, 256),
                nn.BatchNorm1d(256),
                nn.ReLU(inplace=True),
                nn.Dropout(0.5),
                nn.Linear(256, cls_dim),
            )

    def forward(self, pts):
        neighborhood, center = self.group_divider(pts)
        tokens = self.encoder(neighborhood)
        if hasattr(self, "reduce_dim"):
            tokens = self.reduce_dim(tokens)
        B = tokens.shape[0]
        x = torch.cat((self.cls_token.expand(B, -1, -1), tokens), dim=1)
        pos = torch.cat((self.cls_pos.expand(B, -1, -1), self.pos_embed(center)), dim=1)
        x = self.norm(self.blocks(x, pos))
        return self.cls_head_finetune(torch.cat([x[:, 0], x[:, 1:].max(1)[0]], dim=-1))


class OfficialMAEDecoder(nn.Module):
    def __init__(self, dim, depth, num_heads):
        super().__init__()
        self.blocks = nn.ModuleList([Block(dim, num_heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)

    def forward(self, x, pos, return_token_num):
        for block in self.blocks:
            x = block(x + pos)
        return self.norm(x[:, -return_token_num:])


class OfficialMaskTransformer(nn.Module):
    def __init__(self, dim, depth, num_heads):
        super().__init__()
        self.encoder = Encoder(dim)
        self.pos_embed = nn.Sequential(nn.Linear(3, 128), nn.GELU(), nn.Linear(128, dim))
        self.blocks = TransformerEncoder(dim, depth, num_heads)
        self.norm = nn.LayerNorm(dim)


class OfficialPointMAEPretrain(nn.Module):
    """Point-MAE `Point_MAE` pre-training model; `forward(pts, mask)` returns the Chamfer-L2 loss."""

    def __init__(self, dim=384, depth=2, num_heads=6, num_group=16, group_size=8, decoder_depth=2):
        super().__init__()
        self.group_divider = Group(num_group, group_size)
        self.MAE_encoder = OfficialMaskTransformer(dim, depth, num_heads)
        self.mask_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.decoder_pos_embed = nn.Sequential(nn.Linear(3, 128), nn.GELU(), nn.Linear(128, dim))
        self.MAE_decoder = OfficialMAEDecoder(dim, decoder_depth, num_heads)
        self.increase_dim = nn.Sequential(nn.Conv1d(dim, 3 * group_size, 1))
        self.group_size = group_size

    def forward(self, pts, mask):
        neighborhood, center = self.group_divider(pts)
        enc = self.MAE_encoder
        tokens = enc.encoder(neighborhood)
        B, _, C = tokens.shape
        x_vis = tokens[~mask].reshape(B, -1, C)
        x_vis = enc.norm(enc.blocks(x_vis, enc.pos_embed(center[~mask]).reshape(B, -1, C)))
        pos_vis = self.decoder_pos_embed(center[~mask]).reshape(B, -1, C)
        pos_mask = self.decoder_pos_embed(center[mask]).reshape(B, -1, C)
        N = pos_mask.shape[1]
        x_full = torch.cat([x_vis, self.mask_token.expand(B, N, -1)], dim=1)
        x_rec = self.MAE_decoder(x_full, torch.cat([pos_vis, pos_mask], dim=1), N)
        rebuild = self.increase_dim(x_rec.transpose(1, 2)).transpose(1, 2).reshape(B * N, -1, 3)
        gt = neighborhood[mask].reshape(B * N, -1, 3)
        d = ((rebuild[:, :, None] - gt[:, None]) ** 2).sum(-1)
        return d.min(2)[0].mean() + d.min(1)[0].mean()


class GPTBlock(nn.Module):
    def __init__(self, dim, num_heads):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, num_heads)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x, attn_mask):
        x = self.ln_1(x)
        a, _ = self.attn(x, x, x, attn_mask=attn_mask, need_weights=False)
        x = x + a
        return x + self.mlp(self.ln_2(x))


class GPTExtractor(nn.Module):
    def __init__(self, dim, depth, num_heads, num_classes):
        super().__init__()
        self.sos = nn.Parameter(torch.randn(dim))
        self.layers = nn.ModuleList([GPTBlock(dim, num_heads) for _ in range(depth)])
        self.ln_f = nn.LayerNorm(dim)
        self.cls_norm = nn.LayerNorm(dim)
        self.cls_head_finetune = nn.Sequential(
            nn.Linear(dim * 2, 256),
            nn.BatchNorm1d(256),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(256, 256),
            nn.BatchNorm1d(256),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(256, num_classes),
        )

    def forward(self, h, pos, attn_mask):
        h, pos = h.transpose(0, 1), pos.transpose(0, 1)
        sos = self.sos.view(1, 1, -1).expand(1, h.shape[1], -1)
        h = torch.cat([sos, h], dim=0)
        for layer in self.layers:
            h = layer(h + pos, attn_mask)
        h = self.ln_f(h)
        h = self.cls_norm(h.transpose(0, 1))
        return self.cls_head_finetune(torch.cat([h[:, 1], h[:, 2:].max(1)[0]], dim=-1))


def official_pos_sine(xyz, d_model, temperature=1.0):
    f = d_model // 3 // 2 * 2
    dim_t = torch.arange(f, dtype=torch.float32)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / f)
    out = []
    for a in range(3):
        p = xyz[..., a : a + 1] * 2 * math.pi / dim_t
        out.append(torch.stack((p[..., 0::2].sin(), p[..., 1::2].cos()), dim=-1).flatten(-2))
    emb = torch.cat(out, dim=-1)
    return nn.functional.pad(emb, (0, d_model - 3 * f))


def official_chain_sort(center):
    B, G, _ = center.shape
    dist = torch.cdist(center, center)
    dist[:, torch.arange(G), torch.arange(G)] = float("inf")
    order = []
    for b in range(B):
        d = dist[b].clone()
        seq = [0]
        d[:, 0] = float("inf")
        for _ in range(G - 1):
            nxt = int(d[seq[-1]].argmin())
            seq.append(nxt)
            d[:, nxt] = float("inf")
        order.append(seq)
    return torch.tensor(order)


class OfficialPointGPT(nn.Module):
    """PointGPT `PointTransformer` fine-tuning classifier (without the generator)."""

    def __init__(self, dim=384, depth=2, num_heads=6, num_group=16, group_size=8, cls_dim=5):
        super().__init__()
        self.group_divider = Group(num_group, group_size)
        self.encoder = Encoder(dim)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.cls_pos = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.sos_pos = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.blocks = GPTExtractor(dim, depth, num_heads, cls_dim)
        self.dim = dim

    def forward(self, pts):
        neighborhood, center = self.group_divider(pts)
        order = official_chain_sort(center)
        center = torch.stack([center[b, order[b]] for b in range(len(order))])
        neighborhood = torch.stack([neighborhood[b, order[b]] for b in range(len(order))])
        tokens = self.encoder(neighborhood)
        B, G, _ = tokens.shape
        x = torch.cat([self.cls_token.expand(B, -1, -1), tokens], dim=1)
        pos = torch.cat(
            [self.cls_pos.expand(B, -1, -1), self.sos_pos.expand(B, -1, -1), official_pos_sine(center, self.dim)], dim=1
        )
        mask = torch.triu(torch.ones(G + 2, G + 2, dtype=torch.bool), diagonal=1)
        return self.blocks(x, pos, mask)
