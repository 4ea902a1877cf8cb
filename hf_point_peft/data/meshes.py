"""Triangle meshes into point clouds: readers for Wavefront OBJ, 0 A.D.'s PMD and (Mega)Glest's G3D models,
area-weighted surface sampling, and a `datasets.Dataset` of clouds with their object (`group`) for object-disjoint
splits.

Used by the scripts that build the real-shape corpus and evaluation sets (`benchmarks/real_shapes/`); every reader
raises ValueError naming what in the file it could not read.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from datasets import Array2D, ClassLabel, Dataset, Features, Value

__all__ = ["Mesh", "clouds_dataset", "normalise_cloud", "read_g3d", "read_obj", "read_pmd", "sample_surface"]


@dataclass
class Mesh:
    """vertices [V, 3] float64, faces [F, 3] int64 (triangles, indices into vertices)."""

    vertices: np.ndarray
    faces: np.ndarray

    def __post_init__(self) -> None:
        self.vertices = np.asarray(self.vertices, dtype=np.float64).reshape(-1, 3)
        self.faces = np.asarray(self.faces, dtype=np.int64).reshape(-1, 3)
        if len(self.faces) and (self.faces.min() < 0 or self.faces.max() >= len(self.vertices)):
            raise ValueError(
                f"face indices must lie in [0, {len(self.vertices)}), got [{self.faces.min()}, {self.faces.max()}]"
            )

    def area(self) -> float:
        return float(_triangle_areas(self.vertices, self.faces).sum())


def read_obj(text: str, name: str = "<obj>") -> Mesh:
    """A Wavefront OBJ: `v x y z [w]` vertices and `f` faces (`i`, `i/t`, `i//n`, `i/t/n`, negative indices relative to
    the vertices read so far); polygons are split into a triangle fan. Other statements (normals, texture
    coordinates, groups, materials, lines) are skipped."""
    vertices: list[list[float]] = []
    faces: list[list[int]] = []
    for number, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            if parts[0] == "v":
                vertices.append([float(x) for x in parts[1:4]])
            elif parts[0] == "f":
                corners = [_obj_index(p, len(vertices)) for p in parts[1:]]
                faces.extend([corners[0], corners[i], corners[i + 1]] for i in range(1, len(corners) - 1))
        except (ValueError, IndexError) as error:
            raise ValueError(f"{name}, line {number}: cannot read {line.strip()!r} ({error})") from None
    if not vertices or not faces:
        raise ValueError(f"{name}: no {'vertices' if not vertices else 'faces'} (an OBJ needs `v` and `f` lines)")
    return Mesh(np.array(vertices), np.array(faces))


def _obj_index(token: str, count: int) -> int:
    index = int(token.split("/")[0])
    if index == 0:
        raise ValueError("OBJ indices start at 1")
    return index - 1 if index > 0 else count + index


_PMD_MAGIC = b"PSMD"


def read_pmd(data: bytes, name: str = "<pmd>") -> Mesh:
    """A 0 A.D. model (PMD, versions 1 to 4; little-endian): vertices (position, normal, texture coordinates,
    bone blend), then triangle faces of u16 indices. Bones and prop points after the faces are not needed."""
    if data[:4] != _PMD_MAGIC:
        raise ValueError(f"{name}: not a PMD model (starts with {data[:4]!r}, expected {_PMD_MAGIC!r})")
    try:
        version, _size = struct.unpack_from("<II", data, 4)
        if not 1 <= version <= 4:
            raise ValueError(f"unsupported PMD version {version} (1 to 4 are read)")
        offset = 12
        (num_vertices,) = struct.unpack_from("<I", data, offset)
        offset += 4
        num_uv = 1
        if version >= 4:
            (num_uv,) = struct.unpack_from("<I", data, offset)
            offset += 4
        stride = 12 + 12 + 8 * num_uv + 4 + 16  # position, normal, uv pairs, 4 bone ids, 4 weights
        block = np.frombuffer(data, dtype=np.uint8, count=num_vertices * stride, offset=offset)
        positions = block.reshape(num_vertices, stride)[:, :12].copy().view("<f4").reshape(num_vertices, 3)
        offset += num_vertices * stride
        (num_faces,) = struct.unpack_from("<I", data, offset)
        offset += 4
        faces = np.frombuffer(data, dtype="<u2", count=num_faces * 3, offset=offset).reshape(num_faces, 3)
    except (struct.error, ValueError) as error:
        raise ValueError(f"{name}: truncated or corrupted PMD ({error})") from None
    if num_vertices == 0 or num_faces == 0:
        raise ValueError(f"{name}: the model has {num_vertices} vertices and {num_faces} faces")
    return Mesh(positions.astype(np.float64), faces.astype(np.int64))


_G3D_MAGIC = b"G3D"
_G3D_NAME_BYTES = 64  # fixed-size mesh and texture names
_G3D_TEXTURE_SLOTS = 8  # bits of the mesh header's texture mask, one 64-byte path each bit set


def read_g3d(data: bytes, name: str = "<g3d>") -> Mesh:
    """A (Mega)Glest model (G3D version 4; little-endian): a model header (u16 mesh count, u8 type), then per mesh a
    header (64-byte name; u32 frame, vertex and index counts; 8 floats of material; u32 properties; u32 texture mask),
    a 64-byte path per texture bit, every frame's vertices then every frame's normals (f32 x 3), texture coordinates
    (f32 x 2 per vertex) when any texture is set, and u32 triangle indices. The meshes are read at their first frame
    (the rest pose of an animated model) and joined into one mesh; the file must end where the last mesh does."""
    if data[:3] != _G3D_MAGIC:
        raise ValueError(f"{name}: not a G3D model (starts with {data[:3]!r}, expected {_G3D_MAGIC!r})")
    if len(data) < 4 or data[3] != 4:
        version = data[3] if len(data) > 3 else None
        raise ValueError(f"{name}: unsupported G3D version {version} (version 4 is read)")
    vertices, faces, count = [], [], 0
    try:
        num_meshes, _kind = struct.unpack_from("<HB", data, 4)
        offset = 7
        for _ in range(num_meshes):
            offset += _G3D_NAME_BYTES
            frames, num_vertices, num_indices = struct.unpack_from("<III", data, offset)
            offset += 12 + 8 * 4
            _properties, textures = struct.unpack_from("<II", data, offset)
            offset += 8 + _G3D_NAME_BYTES * bin(textures & ((1 << _G3D_TEXTURE_SLOTS) - 1)).count("1")
            if frames < 1 or num_indices % 3:
                raise ValueError(f"a mesh with {frames} frames and {num_indices} indices (not whole triangles)")
            positions = np.frombuffer(data, dtype="<f4", count=num_vertices * 3, offset=offset)
            offset += 2 * frames * num_vertices * 12 + (num_vertices * 8 if textures else 0)
            indices = np.frombuffer(data, dtype="<u4", count=num_indices, offset=offset)
            offset += num_indices * 4
            vertices.append(positions.reshape(-1, 3))
            faces.append(indices.astype(np.int64).reshape(-1, 3) + count)
            count += num_vertices
        if offset != len(data):
            raise ValueError(f"{len(data) - offset} bytes after the last mesh")
        mesh = Mesh(np.concatenate(vertices or [np.zeros((0, 3))]), np.concatenate(faces or [np.zeros((0, 3))]))
    except (struct.error, ValueError) as error:
        raise ValueError(f"{name}: truncated or corrupted G3D ({error})") from None
    if not len(mesh.faces):
        raise ValueError(f"{name}: the model has no triangles ({num_meshes} meshes, {count} vertices)")
    return mesh


def _triangle_areas(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    a, b, c = (vertices[faces[:, i]] for i in range(3))
    return 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)


def sample_surface(mesh: Mesh, num_points: int, rng: np.random.Generator) -> np.ndarray:
    """`num_points` points uniformly distributed over the mesh surface (triangles drawn by area, then a uniform
    point in each: the square-root barycentric construction) -> [num_points, 3] float64."""
    areas = _triangle_areas(mesh.vertices, mesh.faces)
    total = areas.sum()
    if not np.isfinite(total) or total <= 0:
        raise ValueError(f"the mesh has no surface to sample (total triangle area {total})")
    chosen = rng.choice(len(areas), size=num_points, p=areas / total)
    a, b, c = (mesh.vertices[mesh.faces[chosen, i]] for i in range(3))
    r1 = np.sqrt(rng.random((num_points, 1)))
    r2 = rng.random((num_points, 1))
    return (1 - r1) * a + r1 * (1 - r2) * b + r1 * r2 * c


def normalise_cloud(points: np.ndarray) -> np.ndarray:
    """Centred on its bounding-box centre and scaled into the unit sphere (as ModelNet's and ScanObjectNN's clouds)."""
    centre = (points.max(axis=0) + points.min(axis=0)) / 2
    shifted = points - centre
    radius = np.linalg.norm(shifted, axis=1).max()
    return shifted / radius if radius > 0 else shifted


def clouds_dataset(
    clouds: Iterable[tuple[np.ndarray, int, str]], class_names: Sequence[str], num_points: int
) -> Dataset:
    """(points [num_points, 3], label, group) rows -> a Dataset with `points` (Array2D float32), `label`
    (ClassLabel) and `group` (the object the cloud comes from: `--validation-group-by group`)."""
    rows = {"points": [], "label": [], "group": []}
    for points, label, group in clouds:
        if points.shape != (num_points, 3):
            raise ValueError(f"cloud of object {group!r} has shape {points.shape}, expected ({num_points}, 3)")
        rows["points"].append(points.astype(np.float32))
        rows["label"].append(int(label))
        rows["group"].append(str(group))
    features = Features(
        {
            "points": Array2D(shape=(num_points, 3), dtype="float32"),
            "label": ClassLabel(names=list(class_names)),
            "group": Value("string"),
        }
    )
    return Dataset.from_dict(rows, features=features)
