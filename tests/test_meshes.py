"""Meshes into point clouds (hf_point_peft/data/meshes.py) and the builders of the real-shape corpus and evaluation
set (benchmarks/real_shapes/), on small files written here in the real formats: OBJ, 0 A.D.'s PMD inside a zip,
Sweet Home 3D catalogues (a properties file and OBJ models inside a zip)."""

from __future__ import annotations

import json
import struct
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from datasets import load_from_disk

from hf_point_peft.data import load_point_dataset
from hf_point_peft.data.meshes import (
    Mesh,
    clouds_dataset,
    normalise_cloud,
    read_g3d,
    read_obj,
    read_pmd,
    sample_surface,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks" / "real_shapes"))

import build_corpus  # noqa: E402
import build_evaluation  # noqa: E402
import summarise  # noqa: E402
from sources import catalogue_items, geometry_key  # noqa: E402


# ------------------------------------------------------------------ readers
def test_obj_faces_are_fanned_and_every_index_form_is_read():
    text = "# a unit square and a triangle\nv 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nvn 0 0 1\nvt 0 0\n"
    text += "f 1/1/1 2/1/1 3/1/1 4/1/1\nv 0 0 1\nf -1 1//1 2\n"
    mesh = read_obj(text)
    assert mesh.vertices.shape == (5, 3)
    assert mesh.faces.tolist() == [[0, 1, 2], [0, 2, 3], [4, 0, 1]]
    assert mesh.area() == pytest.approx(1.0 + 0.5)


def test_obj_errors_name_the_line():
    with pytest.raises(ValueError, match=r"chair.obj, line 2: cannot read 'f 1 x 3'"):
        read_obj("v 0 0 0\nf 1 x 3\n", "chair.obj")
    with pytest.raises(ValueError, match="no faces"):
        read_obj("v 0 0 0\n")
    with pytest.raises(ValueError, match=r"face indices must lie in \[0, 3\)"):
        read_obj("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 9\n")


def pmd_bytes(vertices, faces, version: int = 4, uv_sets: int = 1) -> bytes:
    """A PMD model as 0 A.D. writes it (no bones, no prop points)."""
    body = struct.pack("<I", len(vertices))
    if version >= 4:
        body += struct.pack("<I", uv_sets)
    for x, y, z in vertices:
        body += (
            struct.pack("<3f", x, y, z)
            + struct.pack("<3f", 0, 1, 0)
            + struct.pack(f"<{2 * uv_sets}f", *[0.5] * 2 * uv_sets)
        )
        body += bytes([255, 255, 255, 255]) + struct.pack("<4f", 0, 0, 0, 0)
    body += struct.pack("<I", len(faces)) + b"".join(struct.pack("<3H", *f) for f in faces)
    body += struct.pack("<I", 0)  # bones
    if version >= 2:
        body += struct.pack("<I", 0)  # prop points
    return b"PSMD" + struct.pack("<II", version, len(body)) + body


TETRA = ([(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1)], [(0, 1, 2), (0, 1, 3), (0, 2, 3), (1, 2, 3)])


def g3d_mesh_bytes(frames, faces, textures: int = 0) -> bytes:
    """One G3D (version 4) mesh: header, texture paths, every frame's vertices, then normals, texture coordinates
    when textured, u32 indices."""
    num_vertices = len(frames[0])
    header = b"mesh".ljust(64, b"\0") + struct.pack("<III", len(frames), num_vertices, 3 * len(faces))
    header += struct.pack("<8f", 0.5, 0.5, 0.5, 0, 0, 0, 0, 1) + struct.pack("<II", 0, textures)
    header += b"".join(b"texture.tga".ljust(64, b"\0") for bit in range(8) if textures & (1 << bit))
    body = b"".join(struct.pack("<3f", *v) for frame in frames for v in frame)
    body += struct.pack(f"<{3 * num_vertices * len(frames)}f", *[0.0] * 3 * num_vertices * len(frames))
    if textures:
        body += struct.pack(f"<{2 * num_vertices}f", *[0.5] * 2 * num_vertices)
    return header + body + b"".join(struct.pack("<3I", *f) for f in faces)


def g3d_bytes(*meshes: bytes) -> bytes:
    return b"G3D\x04" + struct.pack("<HB", len(meshes), 0) + b"".join(meshes)


def test_g3d_models_join_their_meshes_at_the_first_frame():
    vertices, faces = TETRA
    moved = [(x + 5, y, z) for x, y, z in vertices]  # a second animation frame, not read
    data = g3d_bytes(
        g3d_mesh_bytes([vertices, moved], faces, textures=0b101),
        g3d_mesh_bytes([[(2, 0, 0), (3, 0, 0), (2, 1, 0)]], [(0, 1, 2)]),
    )
    mesh = read_g3d(data, "tower.g3d")
    np.testing.assert_array_equal(mesh.vertices[:4], np.array(vertices, dtype=float))
    np.testing.assert_array_equal(mesh.vertices[4:], [[2, 0, 0], [3, 0, 0], [2, 1, 0]])
    np.testing.assert_array_equal(mesh.faces, np.array([*faces, (4, 5, 6)]))
    assert mesh.area() > 0


def test_g3d_reader_names_what_it_cannot_read():
    good = g3d_bytes(g3d_mesh_bytes([TETRA[0]], TETRA[1]))
    with pytest.raises(ValueError, match=r"x\.g3d: not a G3D model"):
        read_g3d(b"PSMD" + good[4:], "x.g3d")
    with pytest.raises(ValueError, match="tree.g3d: unsupported G3D version 3"):
        read_g3d(b"G3D\x03" + good[4:], "tree.g3d")
    with pytest.raises(ValueError, match="tree.g3d: truncated or corrupted G3D"):
        read_g3d(good[:-5], "tree.g3d")
    with pytest.raises(ValueError, match="7 bytes after the last mesh"):
        read_g3d(good + bytes(7), "tree.g3d")
    with pytest.raises(ValueError, match="not whole triangles"):
        read_g3d(good.replace(struct.pack("<III", 1, 4, 12), struct.pack("<III", 1, 4, 11), 1), "tree.g3d")
    with pytest.raises(ValueError, match=r"tree.g3d: .*face indices must lie in \[0, 4\)"):
        read_g3d(g3d_bytes(g3d_mesh_bytes([TETRA[0]], [(0, 1, 9)])), "tree.g3d")
    with pytest.raises(ValueError, match=r"empty.g3d: the model has no triangles \(0 meshes, 0 vertices\)"):
        read_g3d(g3d_bytes(), "empty.g3d")


@pytest.mark.parametrize("version,uv_sets", [(4, 1), (4, 2), (3, 1), (1, 1)])
def test_pmd_models_of_every_version_are_read(version, uv_sets):
    mesh = read_pmd(pmd_bytes(*TETRA, version=version, uv_sets=uv_sets))
    np.testing.assert_array_equal(mesh.vertices, np.array(TETRA[0], dtype=float))
    assert mesh.faces.tolist() == [list(f) for f in TETRA[1]]


def test_pmd_errors_say_what_is_wrong():
    with pytest.raises(ValueError, match="not a PMD model"):
        read_pmd(b"GLTF" + bytes(20), "x.pmd")
    with pytest.raises(ValueError, match="tree.pmd: truncated or corrupted PMD"):
        read_pmd(pmd_bytes(*TETRA)[:60], "tree.pmd")
    with pytest.raises(ValueError, match="unsupported PMD version 7"):
        read_pmd(b"PSMD" + struct.pack("<II", 7, 0) + bytes(8))


def test_surface_samples_lie_on_the_mesh_and_follow_the_area():
    # two triangles in the plane z = 0: areas 0.5 (x < 1) and 1.5 (x >= 1)
    mesh = Mesh([(0, 0, 0), (1, 0, 0), (0, 1, 0), (1, 0, 0), (4, 0, 0), (1, 1, 0)], [(0, 1, 2), (3, 4, 5)])
    points = sample_surface(mesh, 20000, np.random.default_rng(0))
    assert np.all(points[:, 2] == 0)
    first = points[points[:, 0] < 1]
    assert np.all(first[:, 0] + first[:, 1] <= 1 + 1e-9)  # inside the first triangle
    share = np.mean(points[:, 0] >= 1)
    assert share == pytest.approx(0.75, abs=0.02)
    cloud = normalise_cloud(points)
    assert np.linalg.norm(cloud, axis=1).max() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no surface"):
        sample_surface(Mesh([(0, 0, 0), (1, 0, 0), (2, 0, 0)], [(0, 1, 2)]), 5, np.random.default_rng(0))


def test_clouds_dataset_checks_the_shape():
    with pytest.raises(ValueError, match=r"object 'chair-1' has shape \(5, 3\), expected \(8, 3\)"):
        clouds_dataset([(np.zeros((5, 3)), 0, "chair-1")], ["chair"], 8)


# ------------------------------------------------------------------ Sweet Home 3D catalogues -> evaluation set
def box_obj(sx: float, sy: float, sz: float, material: str = "wood") -> str:
    corners = [(x * sx, y * sy, z * sz) for x in (0, 1) for y in (0, 1) for z in (0, 1)]
    faces = [(1, 2, 4, 3), (5, 7, 8, 6), (1, 5, 6, 2), (3, 4, 8, 7), (1, 3, 7, 5), (2, 6, 8, 4)]
    return (
        f"mtllib {material}.mtl\nusemtl {material}\n"
        + "".join(f"v {x} {y} {z}\n" for x, y, z in corners)
        + "".join("f " + " ".join(map(str, f)) + "\n" for f in faces)
    )


def write_catalogue(path: Path, items: list[tuple[str, str, str]], licence: str) -> None:
    """items: (name, category, obj text)."""
    lines = ["id=Test#catalogue", f"license={licence}"]
    with zipfile.ZipFile(path, "w") as archive:
        for i, (name, category, obj) in enumerate(items, 1):
            lines += [f"id#{i}=Test#{i}", f"name#{i}={name}", f"category#{i}={category}", f"model#{i}=/m{i}/m.obj"]
            archive.writestr(f"m{i}/m.obj", obj)
        lines += ["id#99=Test#99", "name#99=Missing model", "category#99=Kitchen", "model#99=/nowhere.obj"]
        archive.writestr("PluginFurnitureCatalog.properties", "\n".join(lines))


def catalogues(tmp_path: Path):
    first = [(f"Chair {i}", "Living room", box_obj(1, 2 + i, 1)) for i in range(4)]
    first += [(f"Coffee table {i}", "Living room", box_obj(3 + i, 1, 2)) for i in range(4)]
    first += [(f"Table lamp {i}", "Lights", box_obj(1, 1, 5 + i)) for i in range(3)]
    first += [("Sofa bed", "Bedroom", box_obj(9, 9, 9)), ("Radiator", "Miscellaneous", box_obj(7, 1, 7))]
    second = [("Lamp", "Lights", box_obj(1, 1, 8)), ("Chair", "Kitchen", box_obj(1, 2, 1, material="steel"))]
    write_catalogue(tmp_path / "a.sh3f", first, "CC-BY 3.0")
    write_catalogue(tmp_path / "b.sh3f", second, "CC0")
    return [
        *catalogue_items(tmp_path / "a.sh3f", "PluginFurnitureCatalog.properties"),
        *catalogue_items(tmp_path / "b.sh3f", "PluginFurnitureCatalog.properties"),
    ]


def test_catalogues_are_read_and_labelled(tmp_path):
    items = catalogues(tmp_path)
    assert len(items) == 15  # the item whose model is not in the archive is left out
    labels = {item.name: build_evaluation.label_of(item) for item in items}
    assert labels["Table lamp 0"] == "lamp" and labels["Coffee table 1"] == "table" and labels["Chair 2"] == "chair"
    assert labels["Sofa bed"] is None and labels["Radiator"] is None
    # the second catalogue's chair is the first one's in another material: one object
    chair, steel = items[0], items[-1]
    assert geometry_key(chair.geometry_text()) == geometry_key(steel.geometry_text())


def test_evaluation_splits_are_object_disjoint_and_loadable(tmp_path):
    items = catalogues(tmp_path)
    out = tmp_path / "eval"
    summary = build_evaluation.build(
        items, out, min_objects=3, splits=3, test_fraction=0.34, num_points=64, train_clouds=2, seed=0
    )
    assert summary["classes"] == ["chair", "table", "lamp"]
    assert summary["objects"] == {"chair": 4, "table": 4, "lamp": 4}
    assert summary["left_out"] == {"name matches no class or several": 2}
    test_sets = []
    for split in range(3):
        data = load_point_dataset("disk", out / f"split_{split}")
        train_groups, test_groups = set(data["train"]["group"]), set(data["test"]["group"])
        assert not train_groups & test_groups
        assert len(train_groups | test_groups) == 12
        assert len(data["train"]) == 2 * len(train_groups) and len(data["test"]) == len(test_groups)
        assert sorted(np.bincount(data["test"]["label"]).tolist()) == [1, 1, 1]
        test_sets.append(frozenset(test_groups))
        assert np.asarray(data["train"][0]["points"]).shape == (64, 3)
    assert len(set(test_sets)) > 1  # the splits differ


# ------------------------------------------------------------------ 0 A.D. and MegaGlest -> pre-training corpus
def zero_ad_package(root: Path) -> Path:
    """An unpacked `0ad-data` holding five PMD models: two of one geometry, one too small, one test model."""
    archive = root / "usr/share/games/0ad/mods/public/public.zip"
    archive.parent.mkdir(parents=True)
    scaled = [tuple(2 * c for c in v) for v in TETRA[0]]
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("art/meshes/gaia/rock_1.pmd", pmd_bytes(*TETRA))
        zipped.writestr("art/meshes/gaia/rock_copy.pmd", pmd_bytes(*TETRA))
        zipped.writestr("art/meshes/props/shield.pmd", pmd_bytes(scaled, TETRA[1]))
        zipped.writestr("art/meshes/props/tiny.pmd", pmd_bytes(TETRA[0], TETRA[1][:1]))
        zipped.writestr("art/meshes/test/cube.pmd", pmd_bytes(scaled, TETRA[1]))
        zipped.writestr("art/textures/skip.png", b"")
    return root


def test_corpus_keeps_distinct_usable_models(tmp_path):
    source = build_corpus.SOURCES["0ad"]
    summary = build_corpus.build(
        [(source, zero_ad_package(tmp_path / "0ad"), "1")],
        tmp_path / "out",
        min_faces=2,
        num_points=32,
        test_fraction=0.02,
        seed=0,
    )
    assert summary["models_read"] == 5 and summary["models_used"] == 2
    assert summary["sources"][0]["left_out"] == {
        "fewer than 2 triangles": 1,
        "same geometry as a model kept": 1,
        "a test or placeholder model": 1,
    }
    data = load_from_disk(str(tmp_path / "out" / "corpus"))
    assert sorted([*data["train"]["group"], *data["test"]["group"]]) == [
        "art/meshes/gaia/rock_1.pmd",
        "art/meshes/props/shield.pmd",
    ]


def test_corpus_of_two_packages_counts_each_and_keeps_a_shared_geometry_once(tmp_path):
    game = tmp_path / "megaglest/usr/share/games/megaglest"
    (game / "tilesets/forest/models").mkdir(parents=True)
    (game / "techs/megapack/factions/tech/units/worker").mkdir(parents=True)
    tree = [(x, y, 3 * z) for x, y, z in TETRA[0]]
    (game / "tilesets/forest/models/tree.g3d").write_bytes(g3d_bytes(g3d_mesh_bytes([tree], TETRA[1], textures=1)))
    (game / "tilesets/forest/models/rock.g3d").write_bytes(g3d_bytes(g3d_mesh_bytes([TETRA[0]], TETRA[1])))
    old = g3d_bytes(g3d_mesh_bytes([tree], TETRA[1]))
    (game / "techs/megapack/factions/tech/units/worker/worker.g3d").write_bytes(b"G3D\x03" + old[4:])
    sources = [
        (build_corpus.SOURCES["0ad"], zero_ad_package(tmp_path / "0ad"), "0.0.26-1"),
        (build_corpus.SOURCES["megaglest"], tmp_path / "megaglest", "3.13.0-3"),
    ]
    summary = build_corpus.build(sources, tmp_path / "out", min_faces=2, num_points=32, test_fraction=0.02, seed=0)
    megaglest = summary["sources"][1]
    assert (megaglest["package"], megaglest["version"]) == ("megaglest-data", "3.13.0-3")
    assert megaglest["models_read"] == 3 and megaglest["models_used"] == 1
    # the rock has 0 A.D.'s rock_1 geometry: kept once, under the first package read
    assert megaglest["left_out"] == {
        "same geometry as a model kept": 1,
        "unsupported G3D version 3 (version 4 is read)": 1,
    }
    assert megaglest["by_folder"] == {"megaglest-tilesets": 1}
    assert (summary["models_read"], summary["models_used"]) == (8, 3)
    data = load_from_disk(str(tmp_path / "out" / "corpus"))
    rows = [*data["train"], *data["test"]]
    names = data["train"].features["label"].names
    assert sorted((row["group"], names[row["label"]]) for row in rows) == [
        ("art/meshes/gaia/rock_1.pmd", "gaia"),
        ("art/meshes/props/shield.pmd", "props"),
        ("megaglest/tilesets/forest/models/tree.g3d", "megaglest-tilesets"),
    ]


# ------------------------------------------------------------------ the summary over splits
def write_benchmark(folder: Path, accuracies: dict[str, float]) -> None:
    folder.mkdir(parents=True)
    rows = [{"key": k, "label": k, "final_epoch_test_accuracy": v} for k, v in accuracies.items()]
    (folder / "benchmark.json").write_text(json.dumps({"rows": rows}))


def test_summary_means_spreads_and_targets(tmp_path):
    new = {
        "full": [0.60, 0.64, 0.62],
        "pointgst": [0.605, 0.635, 0.62],
        "linear": [0.40, 0.42, 0.41],
        "lora": [0.50, 0.52, 0.51],
        "scratch": [0.45, 0.47, 0.49],
    }
    for split in range(3):
        write_benchmark(tmp_path / "new" / f"split_{split}", {k: v[split] for k, v in new.items()})
        write_benchmark(tmp_path / "old" / f"split_{split}", {"full": 0.55 + split / 100, "linear": 0.45})
    out = tmp_path / "summary"
    summarise.main(
        ["--run", f"new={tmp_path / 'new'}", "--run", f"old={tmp_path / 'old'}", "--old", "old", "--out", str(out)]
    )
    result = json.loads(out.with_suffix(".json").read_text())
    rows = {(r["run"], r["key"]): r for r in result["rows"]}
    assert rows["new", "full"]["mean"] == pytest.approx(62.0) and rows["new", "full"]["std"] == pytest.approx(2.0)
    assert (rows["new", "scratch"]["min"], rows["new", "scratch"]["max"]) == pytest.approx((45.0, 49.0))
    verdicts = {t["target"]: t["result"] for t in result["targets"]}
    assert verdicts == {
        "new backbone (full fine-tuning) >= scratch + 10 points": "met",  # 62.0 >= 47.0 + 10
        "PointGST at most 1 point below full fine-tuning": "met",
        "new backbone beats the old one (full fine-tuning)": "met",  # 62.0 > 56.0
        "new backbone beats the old one (linear probe)": "not met",  # 41.0 < 45.0
        "every PEFT method (lora, pointgst) above the linear probe": "met",
    }
    assert "python benchmarks/real_shapes/summarise.py --run" in out.with_suffix(".md").read_text()


def test_summary_pools_the_folders_of_a_run_name_given_twice(tmp_path):
    for split in range(3):
        write_benchmark(tmp_path / "seed0" / f"split_{split}", {"full": 0.60, "scratch": 0.52, "linear": 0.5})
        write_benchmark(tmp_path / "seed1" / f"split_{split}", {"full": 0.64, "scratch": 0.50})
    out = tmp_path / "summary"
    summarise.main(["--run", f"new={tmp_path / 'seed0'}", "--run", f"new={tmp_path / 'seed1'}", "--out", str(out)])
    result = json.loads(out.with_suffix(".json").read_text())
    rows = {r["key"]: r for r in result["rows"]}
    assert rows["full"]["runs"] == 6 and rows["full"]["mean"] == pytest.approx(62.0)
    assert rows["full"]["per_split"] == pytest.approx([60.0] * 3 + [64.0] * 3)  # folder by folder
    assert rows["linear"]["runs"] == 3  # only in the first folder
    verdicts = {t["target"]: t["result"] for t in result["targets"]}
    assert verdicts["new backbone (full fine-tuning) >= scratch + 10 points"] == "met"  # 62.0 >= 51.0 + 10
    assert "| new | full | 6 | 62.00% |" in out.with_suffix(".md").read_text()


def test_summary_says_what_it_cannot_judge(tmp_path):
    write_benchmark(tmp_path / "new" / "split_0", {"full": 0.5, "linear": 0.6, "pointgst": 0.4})
    rows = summarise.summarise(summarise.load_runs({"new": tmp_path / "new"}))
    results = {t["target"]: t["result"] for t in summarise.judge(rows, "new", None)}
    assert results["new backbone (full fine-tuning) >= scratch + 10 points"] == "not judged (rows missing)"
    assert results["PointGST at most 1 point below full fine-tuning"] == "not met"
    assert results["every PEFT method (pointgst) above the linear probe"] == "not met"
    with pytest.raises(FileNotFoundError, match="no split_"):
        summarise.load_runs({"x": tmp_path})


def test_summary_takes_the_scratch_row_from_the_run_it_is_told(tmp_path):
    write_benchmark(tmp_path / "longer" / "split_0", {"full": 0.70, "linear": 0.6})
    write_benchmark(tmp_path / "first" / "split_0", {"full": 0.65, "scratch": 0.58})
    rows = summarise.summarise(summarise.load_runs({"longer": tmp_path / "longer", "first": tmp_path / "first"}))
    results = {t["target"]: t["result"] for t in summarise.judge(rows, "longer", "first", scratch="first")}
    assert results["new backbone (full fine-tuning) >= scratch + 10 points (scratch: run first)"] == "met"  # 70 >= 68
    results = {t["target"]: t["result"] for t in summarise.judge(rows, "longer", "first")}
    assert results["new backbone (full fine-tuning) >= scratch + 10 points"] == "not judged (rows missing)"
    assert results["every PEFT method above the linear probe"] == "not judged (rows missing)"  # no PEFT row


def test_summary_takes_the_any2point_row_from_the_run_it_is_told(tmp_path):
    """Any2Point reads its source encoder, not the backbone: the PEFT target of a new backbone can use the Any2Point
    row of another run, and says which."""
    write_benchmark(tmp_path / "longer" / "split_0", {"full": 0.70, "linear": 0.6, "pointgst": 0.7})
    write_benchmark(tmp_path / "first" / "split_0", {"full": 0.65, "linear": 0.5, "any2point": 0.55})
    rows = summarise.summarise(summarise.load_runs({"longer": tmp_path / "longer", "first": tmp_path / "first"}))
    results = {t["target"]: t["result"] for t in summarise.judge(rows, "longer", None, any2point="first")}
    assert results["every PEFT method (pointgst, any2point of run first) above the linear probe"] == "not met"  # 55<60
    results = {t["target"]: t["result"] for t in summarise.judge(rows, "longer", None)}
    assert results["every PEFT method (pointgst) above the linear probe"] == "met"  # without it: 70 > 60
    with pytest.raises(SystemExit) as raised:
        summarise.main(["--run", f"a={tmp_path / 'first'}", "--any2point", "b", "--out", str(tmp_path / "s")])
    assert raised.value.code == 2


def test_summary_refuses_a_run_name_it_was_not_given(tmp_path, capsys):
    write_benchmark(tmp_path / "new" / "split_0", {"full": 0.7, "scratch": 0.5})
    with pytest.raises(SystemExit) as raised:
        summarise.main(["--run", f"new={tmp_path / 'new'}", "--scratch", "nwe", "--out", str(tmp_path / "s")])
    assert raised.value.code == 2
    assert "--scratch 'nwe' names no --run; the runs are ['new']" in capsys.readouterr().err
