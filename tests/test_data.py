"""Data readers on small files in the real formats, the synthetic shapes, transforms and the collator."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from datasets import Array2D, ClassLabel, Dataset, DatasetDict, load_from_disk

from hf_point_peft.data import (
    MODELNET40_CLASSES,
    SCANOBJECTNN_CLASSES,
    PointCloudCollator,
    load_point_dataset,
    load_synthetic_shapes,
    make_synthetic_shapes,
    read_modelnet40_h5,
    read_modelnet40_text,
    read_scanobjectnn,
    train_validation_split,
)
from hf_point_peft.data.transforms import random_subsample, rotate_y, scale_and_translate

# ------------------------------------------------------------------ ModelNet40, text layout


def write_modelnet_text(root, rows=20, shapes=(("airplane", 2, 1), ("chair", 1, 2))):
    root.mkdir(parents=True, exist_ok=True)
    (root / "modelnet40_shape_names.txt").write_text("\n".join(MODELNET40_CLASSES) + "\n")
    rng = np.random.default_rng(0)
    train, test = [], []
    for cls, n_train, n_test in shapes:
        (root / cls).mkdir(exist_ok=True)
        for i in range(n_train + n_test):
            shape_id = f"{cls}_{i + 1:04d}"
            data = np.concatenate([rng.normal(size=(rows, 3)) * 3 + 5, rng.normal(size=(rows, 3))], axis=1)
            np.savetxt(root / cls / f"{shape_id}.txt", data, delimiter=",", fmt="%.6f")
            (train if i < n_train else test).append(shape_id)
    (root / "modelnet40_train.txt").write_text("\n".join(train) + "\n")
    (root / "modelnet40_test.txt").write_text("\n".join(test) + "\n")
    return root


def test_modelnet40_text_reader(tmp_path):
    root = write_modelnet_text(tmp_path / "modelnet40_normal_resampled")
    data = read_modelnet40_text(root, num_points=16)
    assert set(data) == {"train", "test"} and data["train"].num_rows == 3 and data["test"].num_rows == 3
    features = data["train"].features
    assert isinstance(features["points"], Array2D) and features["points"].shape == (16, 3)
    assert isinstance(features["label"], ClassLabel) and features["label"].names == list(MODELNET40_CLASSES)
    assert data["train"]["label"] == [0, 0, 8]  # airplane, airplane, chair in the official order
    pts = np.asarray(data["train"][0]["points"])
    raw = np.loadtxt(root / "airplane" / "airplane_0001.txt", delimiter=",")[:16, :3]
    expected = (raw - raw.mean(0)) / np.linalg.norm(raw - raw.mean(0), axis=1).max()
    np.testing.assert_allclose(pts, expected, atol=1e-5)  # official pc_normalize of the first N points
    normals = read_modelnet40_text(root, num_points=16, use_normals=True, splits=("test",))
    assert normals["test"].features["points"].shape == (16, 6)


def test_modelnet40_text_errors(tmp_path):
    root = write_modelnet_text(tmp_path / "mn")
    with pytest.raises(ValueError, match="need at least 64 rows"):
        read_modelnet40_text(root, num_points=64)
    (root / "modelnet40_test.txt").unlink()
    with pytest.raises(FileNotFoundError, match="'test' split list.*modelnet40_test.txt"):
        read_modelnet40_text(root, num_points=16)
    root = write_modelnet_text(tmp_path / "mn2")
    (root / "chair" / "chair_0002.txt").write_text("1,2,3\nnot,a,number\n")
    with pytest.raises(ValueError, match="chair_0002.txt"):
        read_modelnet40_text(root, num_points=1, splits=("test",))
    with pytest.raises(FileNotFoundError, match="class-name file"):
        read_modelnet40_text(tmp_path / "empty")


def test_name_and_list_files_that_cannot_be_used_are_named(tmp_path):
    root = write_modelnet_text(tmp_path / "mn")
    names = root / "modelnet40_shape_names.txt"
    names.write_text("\n".join([*MODELNET40_CLASSES[:39], "chair"]) + "\n")
    with pytest.raises(ValueError, match=r"shape_names.txt: class name 'chair' is listed twice \(names 9 and 40\)"):
        read_modelnet40_text(root, num_points=16)
    names.write_bytes("\n".join(MODELNET40_CLASSES).encode().replace(b"bench", b"b\xe9nch"))
    with pytest.raises(ValueError, match=r"modelnet40_shape_names.txt: not UTF-8 text \(byte \d+: b'\\xe9'\)"):
        read_modelnet40_text(root, num_points=16)
    names.write_text("\n".join(MODELNET40_CLASSES) + "\n")
    (root / "modelnet40_test.txt").write_bytes(b"chair_0002\n\xff\n")
    with pytest.raises(ValueError, match="modelnet40_test.txt: not UTF-8 text"):
        read_modelnet40_text(root, num_points=16)


# ------------------------------------------------------------------ HDF5 layouts


def write_h5(path, **arrays):
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            f.create_dataset(key, data=value)
    return path


def test_modelnet40_h5_reader_and_errors(tmp_path):
    root = tmp_path / "modelnet40_ply_hdf5_2048"
    root.mkdir()
    (root / "shape_names.txt").write_text("\n".join(MODELNET40_CLASSES))
    rng = np.random.default_rng(0)
    write_h5(
        root / "ply_data_train0.h5",
        data=rng.normal(size=(4, 32, 3)).astype(np.float32),
        label=np.array([[0], [3], [39], [1]]),
    )
    write_h5(
        root / "ply_data_train1.h5", data=rng.normal(size=(2, 32, 3)).astype(np.float32), label=np.array([[5], [6]])
    )
    write_h5(
        root / "ply_data_test0.h5", data=rng.normal(size=(3, 32, 3)).astype(np.float32), label=np.array([[2], [2], [7]])
    )
    data = read_modelnet40_h5(root)
    assert data["train"].num_rows == 6 and data["train"]["label"] == [0, 3, 39, 1, 5, 6]
    assert data["test"].features["points"].shape == (32, 3)
    write_h5(root / "ply_data_test0.h5", data=np.zeros((2, 32, 3), np.float32), label=np.array([[1], [40]]))
    with pytest.raises(ValueError, match=r"ply_data_test0.h5: key 'label' row 1 has label 40, outside \[0, 40\)"):
        read_modelnet40_h5(root)
    write_h5(root / "ply_data_test0.h5", data=np.zeros((2, 32, 3), np.float32))
    with pytest.raises(ValueError, match=r"ply_data_test0.h5: missing key\(s\) \['label'\]"):
        read_modelnet40_h5(root)
    write_h5(root / "ply_data_test0.h5", data=np.zeros((2, 32), np.float32), label=np.array([[1], [2]]))
    with pytest.raises(ValueError, match=r"key 'data' must have shape \[N, points, 3\], got \(2, 32\)"):
        read_modelnet40_h5(root)
    write_h5(root / "ply_data_test0.h5", data=np.zeros((2, 32, 3), np.float32), label=np.array([[1], [2]]))
    write_h5(root / "ply_data_test1.h5", data=np.zeros((2, 16, 3), np.float32), label=np.array([[1], [2]]))
    with pytest.raises(
        ValueError, match="ply_data_test1.h5: key 'data' has 16 points per cloud, ply_data_test0.h5 has 32"
    ):
        read_modelnet40_h5(root)
    (root / "shape_names.txt").write_text("\n".join([*MODELNET40_CLASSES, "airplane"]))
    with pytest.raises(ValueError, match="shape_names.txt: class name 'airplane' is listed twice"):
        read_modelnet40_h5(root)
    (root / "shape_names.txt").write_text("\n".join(MODELNET40_CLASSES))
    for f in root.glob("ply_data_test*"):
        f.unlink()
    with pytest.raises(FileNotFoundError, match="missing 'test' split"):
        read_modelnet40_h5(root)


def write_scanobjectnn(root, variant_folder="main_split", suffix="_augmentedrot_scale75", n=(5, 3)):
    rng = np.random.default_rng(1)
    for stem, count in (("training", n[0]), ("test", n[1])):
        write_h5(
            root / variant_folder / f"{stem}_objectdataset{suffix}.h5",
            data=rng.normal(size=(count, 64, 3)).astype(np.float32),
            label=rng.integers(0, 15, size=count),
            mask=np.zeros((count, 64), np.int32),
        )


@pytest.mark.parametrize(
    "variant, folder, suffix",
    [
        ("PB_T50_RS", "main_split", "_augmentedrot_scale75"),
        ("OBJ_BG", "main_split", ""),
        ("OBJ_ONLY", "main_split_nobg", ""),
    ],
)
def test_scanobjectnn_variants(tmp_path, variant, folder, suffix):
    write_scanobjectnn(tmp_path, folder, suffix)
    data = read_scanobjectnn(tmp_path, variant)
    assert data["train"].num_rows == 5 and data["test"].num_rows == 3
    assert data["train"].features["label"].names == list(SCANOBJECTNN_CLASSES)
    assert data["train"].features["label"].names[:3] == ["bag", "bin", "box"]
    same = load_point_dataset(f"scanobjectnn-{variant.lower()}", tmp_path)
    assert same["test"]["id"] == data["test"]["id"]


def test_scanobjectnn_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="PB_T50_RS train file.*training_objectdataset_augmentedrot_scale75.h5"):
        read_scanobjectnn(tmp_path, "PB_T50_RS")
    with pytest.raises(ValueError, match="unknown ScanObjectNN variant 'PB_T25'"):
        read_scanobjectnn(tmp_path, "PB_T25")
    write_h5(
        tmp_path / "main_split" / "training_objectdataset.h5",
        data=np.zeros((3, 8, 3), np.float32),
        label=np.array([0, 1, 2]),
        mask=np.zeros((2, 8)),
    )
    with pytest.raises(ValueError, match="training_objectdataset.h5: keys disagree.*data 3, label 3, mask 2"):
        read_scanobjectnn(tmp_path, "OBJ_BG", splits=("train",))
    write_h5(
        tmp_path / "main_split" / "training_objectdataset.h5",
        data=np.zeros((3, 8, 3), np.float32),
        label=np.array([0, 1, 2]),
        mask=np.float32(0),
    )
    with pytest.raises(ValueError, match="training_objectdataset.h5: keys disagree.*label 3, mask a single value"):
        read_scanobjectnn(tmp_path, "OBJ_BG", splits=("train",))
    bad = np.zeros((2, 8, 3), np.float32)
    bad[1, 2, 0] = np.nan
    write_h5(
        tmp_path / "main_split" / "training_objectdataset.h5", data=bad, label=np.array([0, 1]), mask=np.zeros((2, 8))
    )
    with pytest.raises(ValueError, match="key 'data' row 1 holds NaN"):
        read_scanobjectnn(tmp_path, "OBJ_BG", splits=("train",))
    (tmp_path / "main_split" / "training_objectdataset.h5").write_text("not hdf5")
    with pytest.raises(ValueError, match="not a readable HDF5 file"):
        read_scanobjectnn(tmp_path, "OBJ_BG", splits=("train",))


def test_round_trips_offline(tmp_path):
    write_scanobjectnn(tmp_path)
    data = read_scanobjectnn(tmp_path)
    data.save_to_disk(str(tmp_path / "disk"))
    back = load_from_disk(str(tmp_path / "disk"))
    assert back["train"].features == data["train"].features
    np.testing.assert_array_equal(np.asarray(back["train"]["points"]), np.asarray(data["train"]["points"]))
    assert load_point_dataset("disk", tmp_path / "disk")["test"].num_rows == 3
    data["test"].to_parquet(str(tmp_path / "test.parquet"))
    parquet = Dataset.from_parquet(str(tmp_path / "test.parquet"))
    assert parquet.features["label"].names == list(SCANOBJECTNN_CLASSES)
    np.testing.assert_array_equal(np.asarray(parquet["points"]), np.asarray(data["test"]["points"]))


def test_load_point_dataset_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'shapenet'"):
        load_point_dataset("shapenet", tmp_path)
    with pytest.raises(ValueError, match="pass their folder"):
        load_point_dataset("modelnet40")
    with pytest.raises(FileNotFoundError, match="dataset folder not found"):
        load_point_dataset("modelnet40-h5", tmp_path / "nope")


# ------------------------------------------------------------------ synthetic shapes


def test_synthetic_shapes_are_deterministic_and_balanced(tmp_path):
    a = make_synthetic_shapes(train_per_class=2, test_per_class=1, num_points=64, seed=3)
    b = make_synthetic_shapes(train_per_class=2, test_per_class=1, num_points=64, seed=3)
    c = make_synthetic_shapes(train_per_class=2, test_per_class=1, num_points=64, seed=4)
    assert isinstance(a, DatasetDict) and a["train"].num_rows == 30 and a["test"].num_rows == 15
    assert len(a["train"].features["label"].names) == 15
    np.testing.assert_array_equal(np.asarray(a["train"]["points"]), np.asarray(b["train"]["points"]))
    assert not np.allclose(np.asarray(a["train"]["points"]), np.asarray(c["train"]["points"]))
    pts = np.asarray(a["train"]["points"])
    np.testing.assert_allclose(np.linalg.norm(pts, axis=2).max(axis=1), 1.0, atol=1e-5)  # unit sphere
    assert sorted(a["train"]["label"]) == sorted(list(range(15)) * 2)
    hard = make_synthetic_shapes(train_per_class=2, test_per_class=1, num_points=64, seed=3, variant="hard")
    assert not np.allclose(np.asarray(hard["train"]["points"]), pts)
    with pytest.raises(ValueError, match="variant"):
        make_synthetic_shapes(variant="easy")
    cached = load_synthetic_shapes(cache_dir=tmp_path, train_per_class=2, test_per_class=1, num_points=64, seed=3)
    again = load_synthetic_shapes(cache_dir=tmp_path, train_per_class=2, test_per_class=1, num_points=64, seed=3)
    assert len(list(tmp_path.iterdir())) == 1
    np.testing.assert_array_equal(np.asarray(cached["test"]["points"]), np.asarray(again["test"]["points"]))


def test_train_validation_split_is_stratified_and_disjoint():
    data = make_synthetic_shapes(train_per_class=10, test_per_class=1, num_points=16, seed=0)["train"]
    train, val = train_validation_split(data, 0.2, seed=1)
    assert val.num_rows == 30 and train.num_rows == 120
    assert sorted(np.bincount(val["label"])) == [2] * 15
    assert not set(train["id"]) & set(val["id"])
    assert train_validation_split(data, 0.2, seed=1)[1]["id"] == val["id"]


# ------------------------------------------------------------------ transforms and collator


def gens(n, seed=0):
    return [torch.Generator().manual_seed(seed + i) for i in range(n)]


def test_augmentations():
    pts = torch.randn(4, 50, 3)
    out = scale_and_translate(pts, gens(4))
    ratio = (out - out.mean(1, keepdim=True)) / (pts - pts.mean(1, keepdim=True))
    assert ((ratio > 2 / 3 - 1e-4) & (ratio < 1.5 + 1e-4)).all()
    rot = rotate_y(pts, gens(4))
    torch.testing.assert_close(rot.norm(dim=-1), pts.norm(dim=-1))
    torch.testing.assert_close(rot[..., 1], pts[..., 1])  # the up axis is untouched
    sub = random_subsample(pts, 20, gens(4), point_all=30)
    assert sub.shape == (4, 20, 3)
    for b in range(4):  # every drawn point is one of the cloud's points
        assert torch.cdist(sub[b], pts[b], compute_mode="donot_use_mm_for_euclid_dist").min(dim=1).values.max() < 1e-6
    with pytest.raises(ValueError, match="cannot draw 60 points"):
        random_subsample(pts, 60, gens(4))


def test_collator_train_is_per_sample_deterministic_and_eval_is_fixed():
    data = make_synthetic_shapes(train_per_class=1, test_per_class=1, num_points=128, seed=0)["train"].with_format(
        "numpy"
    )
    rows = [dict(data[i], index=i) for i in range(6)]
    coll = PointCloudCollator(num_points=64, train=True, seed=7, epoch=2)
    full = coll(rows)
    assert full["points"].shape == (6, 64, 3) and full["labels"].tolist() == [int(r["label"]) for r in rows]
    part = coll(rows[3:5])  # same samples in another batch: same augmentation
    assert torch.equal(part["points"], full["points"][3:5])
    coll.epoch = 3
    assert not torch.equal(coll(rows)["points"], full["points"])  # a new epoch draws anew
    ev = PointCloudCollator(num_points=64, train=False)
    assert torch.equal(ev(rows)["points"], ev(rows)["points"])
    with pytest.raises(ValueError, match="augmentation"):
        PointCloudCollator(augmentation="jitter")


def test_splits_with_other_classes_or_no_clouds_are_refused(tmp_path):
    """A test split whose ClassLabel differs from the training split's (other names, order or count) would be scored
    against the wrong classes; an empty split would fail only after training. Both are refused at load, by name."""
    write_scanobjectnn(tmp_path)
    data = read_scanobjectnn(tmp_path)
    names = list(SCANOBJECTNN_CLASSES)
    reordered = DatasetDict(train=data["train"], test=data["test"].cast_column("label", ClassLabel(names=names[::-1])))
    reordered.save_to_disk(str(tmp_path / "reordered"))
    with pytest.raises(
        ValueError, match=f"test split of disk at .* has other classes than the train split .*{names[-1]}"
    ):
        load_point_dataset("disk", tmp_path / "reordered")
    write_scanobjectnn(tmp_path / "empty", n=(5, 0))
    with pytest.raises(ValueError, match="the test split of scanobjectnn-pb_t50_rs at .* is empty"):
        load_point_dataset("scanobjectnn-pb_t50_rs", tmp_path / "empty")


def test_disk_columns_and_cloud_sizes_are_checked_with_a_named_error(tmp_path):
    """A points column under another name was a KeyError traceback from the collator, and clouds of several sizes
    torch.stack's message, both only once training had started."""
    label = ClassLabel(names=["a", "b"])
    rng = np.random.default_rng(0)
    renamed = Dataset.from_dict({"pos": [rng.random((16, 3)).tolist()] * 2, "label": [0, 1]})
    DatasetDict(train=renamed.cast_column("label", label)).save_to_disk(tmp_path / "renamed")
    with pytest.raises(
        ValueError, match=r"the train split of disk at .*renamed has no 'points' column \(it has pos, label\)"
    ):
        load_point_dataset("disk", tmp_path / "renamed")
    rows = [{"points": rng.random((n, 3)).astype(np.float32), "label": 0, "index": i} for i, n in enumerate((16, 18))]
    with pytest.raises(ValueError, match=r"the clouds of one batch \(rows \[0, 1\]\) hold 16 and 18 points"):
        PointCloudCollator(num_points=8, train=False)(rows)
    empty = Dataset.from_dict({"points": [], "label": []}).cast_column("label", label)
    DatasetDict(train=renamed.rename_column("pos", "points").cast_column("label", label), test=empty).save_to_disk(
        tmp_path / "empty"
    )
    with pytest.raises(ValueError, match=r"the test split\(s\) of the dataset saved at .*empty hold no clouds"):
        load_point_dataset("disk", tmp_path / "empty")  # datasets itself fails with an IndexError naming nothing
    # a NaN is named by its dataset row, whichever points the subsampling would keep (it found it in some epochs only)
    rows = [{"points": rng.random((16, 3)).astype(np.float32), "label": 0, "index": i} for i in (7, 3)]
    rows[1]["points"][5, 1] = np.nan
    with pytest.raises(ValueError, match=r"dataset row\(s\) \[3\] hold NaN or inf coordinates"):
        PointCloudCollator(num_points=8, train=True)(rows)
