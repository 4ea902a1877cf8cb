"""The validation split carved from the training data, without letting one object sit on both sides.

Several clouds can come from one object (ScanObjectNN's PB_T50_RS holds five perturbed copies of every object; a
`disk` dataset may hold several scans of one object). A validation split drawn cloud by cloud then holds copies of
training objects, and "the best validation epoch" selects on memorisation. So the split is drawn by object group:

- `group_by=COLUMN` (`--validation-group-by`): the clouds that share a value of that column form one group;
- otherwise a `group` column, where the data has one;
- otherwise the readers whose every cloud is its own object (ModelNet: one shape file per cloud; ScanObjectNN
  OBJ_BG / OBJ_ONLY: one scan per object; the synthetic shapes: one generated shape per cloud) split cloud by cloud,
  which is then object-disjoint;
- anything else (PB_T50_RS, whose files do not record which copies belong together; a `disk` dataset without a
  group column) is split cloud by cloud and reported as such: `validation_grouping` says that the validation split
  may share objects with training, and the model card and metrics.json carry that sentence.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import SettingError
from .names import DATASETS

__all__ = ["ONE_CLOUD_PER_OBJECT", "OWN_VALIDATION", "train_validation_split", "validation_grouping"]

# a dataset that comes with its own `validation` split (a `disk` folder saved with one) is validated on it as it is
OWN_VALIDATION = "by the dataset itself (its own 'validation' split)"

# readers whose every cloud is a distinct object (see the module docstring)
# (all but PB_T50_RS, whose file holds five perturbed copies of each object, and `disk`, which is whatever it holds)
ONE_CLOUD_PER_OBJECT = tuple(name for name in DATASETS if name not in ("scanobjectnn-pb_t50_rs", "disk"))


def validation_grouping(dataset: str, columns: list[str], group_by: str | None = None) -> tuple[str | None, dict]:
    """(the column to group by or None, what the split is, for metrics.json and the card) for the training split
    of `dataset` (its reader's name; "name:path" is accepted) with `columns`."""
    name = dataset.split(":", 1)[0]
    if group_by is not None:
        if group_by not in columns:
            raise SettingError(
                "validation_group_by", group_by, f"the training split has no such column; it has {', '.join(columns)}"
            )
        column = group_by
    elif "group" in columns:
        column = "group"
    else:
        column = None
    if column is not None:
        text = f"object-disjoint: clouds with the same {column!r} are on one side"
        return column, {"validation_grouping": text, "validation_may_share_objects": False}
    if name in ONE_CLOUD_PER_OBJECT:
        text = f"object-disjoint: every cloud of {name} is its own object"
        return None, {"validation_grouping": text, "validation_may_share_objects": False}
    text = (
        f"cloud by cloud: {name} records no object groups, so the validation split may share objects with training "
        "(pass --validation-group-by COLUMN, or add a 'group' column)"
    )
    return None, {"validation_grouping": text, "validation_may_share_objects": True}


def train_validation_split(train, fraction: float = 0.1, seed: int = 0, group_by: str | None = None):
    """Carve a stratified validation split from the training split: (train, validation). With `group_by`, whole
    groups go to one side (the fraction is then of the groups of each class; a group takes the label of its first
    cloud). The test split is never used for model selection."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
    labels = np.asarray(train["label"])
    rng = np.random.default_rng(seed)
    if group_by is not None:
        groups = np.asarray([str(g) for g in train[group_by]])
        _, first, inverse = np.unique(groups, return_index=True, return_inverse=True)
        if len(first) < len(groups):  # some group holds several clouds
            chosen = _stratified_choice(labels[first], fraction, rng)
            in_validation = np.isin(inverse, chosen)
            return train.select(np.flatnonzero(~in_validation)), train.select(np.flatnonzero(in_validation))
    # one cloud per group: the same draw as cloud by cloud
    validation = _stratified_choice(labels, fraction, rng)
    chosen = set(validation)
    return train.select([i for i in range(len(labels)) if i not in chosen]), train.select(sorted(validation))


def _stratified_choice(labels: np.ndarray, fraction: float, rng: np.random.Generator) -> list[Any]:
    """Indices into `labels`: about `fraction` of each class (at least one of a class with several members)."""
    chosen: list[int] = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        take = max(1, int(round(len(members) * fraction))) if len(members) > 1 else 0
        chosen.extend(rng.choice(members, size=take, replace=False).tolist())
    return chosen
