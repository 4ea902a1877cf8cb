"""Geometry ops against brute-force references."""

import itertools

import pytest
import torch

from hf_point_peft.geometry import (
    curve_order,
    farthest_point_sample,
    gather_points,
    group_points,
    hilbert_index,
    hilbert_key,
    knn,
    validate_points,
    z_order_key,
)


def reference_fps(xyz, n, start=0):
    """Scalar farthest point sampling, one sample at a time (pointnet2_ops semantics: first maximum wins)."""
    pts = xyz.tolist()
    chosen = [start]
    dist = [float("inf")] * len(pts)
    for _ in range(n - 1):
        last = pts[chosen[-1]]
        for j, p in enumerate(pts):
            d = sum((a - b) ** 2 for a, b in zip(p, last))
            dist[j] = min(dist[j], d)
        best = max(range(len(pts)), key=lambda j: (dist[j], -j))
        chosen.append(best)
    return chosen


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fps_matches_bruteforce(dtype):
    g = torch.Generator().manual_seed(0)
    xyz = torch.randn(3, 200, 3, generator=g, dtype=dtype)
    idx = farthest_point_sample(xyz, 17)
    assert idx.shape == (3, 17) and idx.dtype == torch.long
    for b in range(3):
        assert idx[b].tolist() == reference_fps(xyz[b].double(), 17)
    assert (idx[:, 0] == 0).all()  # official start convention


def test_fps_random_start_and_errors():
    xyz = torch.randn(4, 50, 3)
    g = torch.Generator().manual_seed(3)
    idx = farthest_point_sample(xyz, 10, start="random", generator=g)
    for b in range(4):
        assert idx[b].tolist() == reference_fps(xyz[b].double(), 10, start=int(idx[b, 0]))
    assert len(set(idx[:, 0].tolist())) > 1
    with pytest.raises(ValueError, match="num_samples"):
        farthest_point_sample(xyz, 51)
    with pytest.raises(ValueError, match="start"):
        farthest_point_sample(xyz, 5, start="middle")


def test_fps_duplicates_pick_distinct_points_while_possible():
    xyz = torch.tensor([[[0.0, 0, 0], [0, 0, 0], [1, 0, 0], [1, 0, 0], [0, 2, 0]]])
    assert farthest_point_sample(xyz, 3)[0].tolist() == [0, 4, 2]


def test_fps_does_not_mix_batch():
    xyz = torch.randn(5, 64, 3)
    full = farthest_point_sample(xyz, 16)
    for b in range(5):
        assert torch.equal(farthest_point_sample(xyz[b : b + 1], 16)[0], full[b])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_knn_matches_bruteforce(dtype):
    g = torch.Generator().manual_seed(1)
    ref = torch.rand(2, 100, 3, generator=g, dtype=dtype)
    query = ref[:, :10]
    dist, idx = knn(query, ref, 7)
    for b in range(2):
        for m in range(10):
            d = [((ref[b, j] - query[b, m]) ** 2).sum().item() for j in range(100)]
            expected = sorted(range(100), key=lambda j: (d[j], j))[:7]
            assert set(idx[b, m].tolist()) == set(expected)
            assert idx[b, m, 0] == m  # a point is its own nearest neighbour
            torch.testing.assert_close(dist[b, m], torch.tensor(sorted(d)[:7], dtype=dtype))


def test_group_points_relative_to_centre_and_extra_channels():
    g = torch.Generator().manual_seed(2)
    pts = torch.randn(2, 128, 6, generator=g)
    rel, centres, idx = group_points(pts, 8, 16)
    assert rel.shape == (2, 8, 16, 6) and centres.shape == (2, 8, 3)
    fps = farthest_point_sample(pts[..., :3], 8)
    assert torch.equal(centres, gather_points(pts[..., :3], fps))
    absolute = gather_points(pts, idx)
    torch.testing.assert_close(rel[..., :3], absolute[..., :3] - centres.unsqueeze(2))
    torch.testing.assert_close(rel[..., 3:], absolute[..., 3:])  # normals untouched
    torch.testing.assert_close(rel[:, :, 0, :3], torch.zeros(2, 8, 3))  # the centre is its own first neighbour


def reference_z_order(x, y, z):
    """Bitwise reference of the official key: trunc(100c), axes (y, x, z), 16-bit two's complement."""
    qx, qy, qz = (int(v * 100) % (1 << 16) for v in (x, y, z))  # int() truncates toward zero; % wraps negatives
    key = 0
    for i in range(16):
        key |= ((qy >> i) & 1) << (3 * i + 2)
        key |= ((qx >> i) & 1) << (3 * i + 1)
        key |= ((qz >> i) & 1) << (3 * i)
    return key


def test_z_order_matches_reference_including_negatives():
    g = torch.Generator().manual_seed(4)
    c = (torch.rand(2, 50, 3, generator=g, dtype=torch.float64) - 0.5) * 3
    keys = z_order_key(c)
    for b in range(2):
        for j in range(50):
            assert int(keys[b, j]) == reference_z_order(*c[b, j].tolist())
    # hand-checked: y bit is the most significant of the triple
    assert int(z_order_key(torch.tensor([[0.0, 0.01, 0.0]]))[0]) == 0b100
    assert int(z_order_key(torch.tensor([[0.01, 0.0, 0.0]]))[0]) == 0b010
    assert int(z_order_key(torch.tensor([[0.0, 0.0, 0.01]]))[0]) == 0b001
    # -0.01 -> -1 -> 0xFFFF: all 16 x-bits set
    assert int(z_order_key(torch.tensor([[-0.01, 0.0, 0.0]]))[0]) == sum(1 << (3 * i + 1) for i in range(16))


def test_curve_keys_reject_non_finite():
    with pytest.raises(ValueError, match="finite"):
        z_order_key(torch.tensor([[float("nan"), 0.0, 0.0]]))


@pytest.mark.parametrize("bits", [1, 2, 3])
def test_hilbert_is_a_continuous_bijection(bits):
    side = 1 << bits
    cells = torch.tensor(list(itertools.product(range(side), repeat=3)), dtype=torch.long)
    keys = hilbert_index(cells, bits)
    assert sorted(keys.tolist()) == list(range(side**3))  # bijection onto [0, 8^bits)
    path = cells[keys.argsort()]
    steps = (path[1:] - path[:-1]).abs().sum(dim=1)
    assert (steps == 1).all()  # consecutive keys are face-adjacent cells: the Hilbert property
    assert path[0].tolist() == [0, 0, 0]


def test_hilbert_key_quantisation_and_batch_independence():
    g = torch.Generator().manual_seed(5)
    c = torch.rand(3, 40, 3, generator=g) * 2 - 1
    keys = hilbert_key(c)
    rel = c - c.amin(dim=1, keepdim=True)
    expected = hilbert_index((rel * 100).long(), 16)
    assert torch.equal(keys, expected)
    assert torch.equal(hilbert_key(c[1:2])[0], keys[1])


def test_curve_order_is_stable_with_inverse():
    keys = torch.tensor([[5, 1, 5, 0, 1]])
    perm, inv = curve_order(keys)
    assert perm.tolist() == [[3, 1, 4, 0, 2]]  # ties keep token order
    assert torch.equal(perm.gather(1, inv), torch.arange(5).unsqueeze(0))


@pytest.mark.parametrize(
    "bad, match",
    [
        ([[1.0, 2.0, 3.0]], "torch.Tensor"),
        (torch.zeros(2, 10, 3, dtype=torch.long), "float"),
        (torch.zeros(10, 3), "3-D"),
        (torch.zeros(2, 10, 2), "at least 3 channels"),
        (torch.zeros(2, 4, 3), "needs at least 8"),
    ],
)
def test_validate_points_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        validate_points(bad, min_points=8)


def test_validate_points_names_first_bad_sample():
    pts = torch.zeros(4, 10, 3)
    pts[2, 3, 1] = float("inf")
    pts[3, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="first bad sample index is 2"):
        validate_points(pts)
