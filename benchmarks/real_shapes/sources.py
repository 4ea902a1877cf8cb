"""Where the real meshes come from: Debian packages reachable offline, read as shipped.

- 0 A.D.'s art (`0ad-data`): about 4,000 modelled objects (trees, rocks, buildings, helmets, shields, weapons,
  animals, ...) as PMD models inside `public.zip`; unlabelled, the pre-training corpus.
- MegaGlest's art (`megaglest-data`): about 1,300 modelled units, buildings, trees, rocks and props of its factions
  and tilesets as G3D models; unlabelled, a second part of the pre-training corpus.
- Sweet Home 3D's furniture (`sweethome3d` default catalogue inside its jar, `sweethome3d-furniture` catalogues as
  `.sh3f` zips): about 900 modelled household objects as OBJ, each with a name and a category; the labelled
  evaluation set.

The two never share a model (other projects, other artists). CGAL's demo meshes are in neither and stay out of
every corpus and evaluation here (they are kept for independent evaluation).
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from hf_point_peft.data.meshes import Mesh, read_g3d, read_obj, read_pmd

__all__ = [
    "CatalogueItem",
    "DebianPackage",
    "catalogue_items",
    "debian_package",
    "geometry_key",
    "megaglest_meshes",
    "zero_ad_meshes",
]


@dataclass(frozen=True)
class DebianPackage:
    name: str
    version: str
    deb: Path
    root: Path  # where it was unpacked


def debian_package(name: str, cache: Path) -> DebianPackage:
    """The package `name` from Debian's archive (`apt-get download` into `cache`, once), unpacked beside it."""
    cache.mkdir(parents=True, exist_ok=True)
    debs = sorted(cache.glob(f"{name}_*.deb"))
    if not debs:
        subprocess.run(["apt-get", "download", name], cwd=cache, check=True, capture_output=True)
        debs = sorted(cache.glob(f"{name}_*.deb"))
    if not debs:
        raise FileNotFoundError(f"apt-get download {name} left no {name}_*.deb in {cache}")
    deb = debs[-1]
    version = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], check=True, capture_output=True, text=True)
    root = cache / name
    if not root.is_dir():
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    return DebianPackage(name, version.stdout.strip(), deb, root)


# ------------------------------------------------------------------ 0 A.D.
def zero_ad_meshes(public_zip: Path) -> Iterator[tuple[str, Mesh]]:
    """(path inside the archive, mesh) for every PMD model under art/meshes/, in name order."""
    with zipfile.ZipFile(public_zip) as archive:
        for name in sorted(n for n in archive.namelist() if n.startswith("art/meshes/") and n.endswith(".pmd")):
            yield name, read_pmd(archive.read(name), name)


# ------------------------------------------------------------------ MegaGlest
def megaglest_meshes(game_root: Path) -> Iterator[tuple[str, Mesh | str]]:
    """(path under the game's folder, mesh) for every G3D model there, in name order; a model the reader cannot use
    comes with the reason instead of a mesh (three are in an older G3D version), so that it is counted, not lost."""
    for path in sorted(game_root.rglob("*.g3d")):
        name = path.relative_to(game_root).as_posix()
        try:
            yield name, read_g3d(path.read_bytes(), name)
        except ValueError as error:
            yield name, str(error).removeprefix(f"{name}: ")


# ------------------------------------------------------------------ Sweet Home 3D
@dataclass(frozen=True)
class CatalogueItem:
    catalogue: str  # file name of the catalogue
    licence: str  # the catalogue's `license=` line
    item_id: str
    name: str
    category: str
    creator: str
    model: str  # path of the OBJ inside the archive
    archive: Path

    def mesh(self) -> Mesh:
        return read_obj(self.geometry_text(), f"{self.archive.name}:{self.model}")

    def geometry_text(self) -> str:
        with zipfile.ZipFile(self.archive) as archive:
            return archive.read(self.model).decode("latin-1")


def _properties(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip()
    return values


def catalogue_items(archive: Path, properties_path: str) -> list[CatalogueItem]:
    """The items of one furniture catalogue: a `.sh3f` zip (`PluginFurnitureCatalog.properties`) or Sweet Home 3D's
    jar (`com/eteks/sweethome3d/io/DefaultFurnitureCatalog.properties`). Items whose model is not an OBJ inside the
    archive are left out (none in the shipped catalogues)."""
    with zipfile.ZipFile(archive) as zipped:
        values = _properties(zipped.read(properties_path).decode("latin-1"))
        present = set(zipped.namelist())
    items = []
    indices = sorted({int(m.group(1)) for key in values if (m := re.fullmatch(r"id#(\d+)", key))})
    for i in indices:
        model = values.get(f"model#{i}", "").lstrip("/")
        if not model.endswith(".obj") or model not in present:
            continue
        items.append(
            CatalogueItem(
                catalogue=archive.name,
                licence=values.get("license", ""),
                item_id=values[f"id#{i}"],
                name=values.get(f"name#{i}", ""),
                category=values.get(f"category#{i}", ""),
                creator=values.get(f"creator#{i}", ""),
                model=model,
                archive=archive,
            )
        )
    return items


def geometry_key(obj_text: str) -> str:
    """The same geometry gives the same key whatever its materials, texture coordinates or comments: the hash of
    the vertex and face lines. Items with one key are one object (near-copies across catalogues)."""
    lines = [line.split() for line in obj_text.splitlines()]
    kept = [" ".join(parts) for parts in lines if parts and parts[0] in ("v", "f")]
    return hashlib.sha256("\n".join(kept).encode()).hexdigest()[:16]
