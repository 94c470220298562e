"""The cells of a sweep: :class:`Grid` (a product of axes, zipped axes and seeds)."""
from __future__ import annotations

import dataclasses
import itertools
import math
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from .._io import read_config_file
from .._validation import check_int

__all__ = ["Grid", "RESERVED_NAMES"]


# Column names of the tidy frame; a grid axis may not reuse them.
RESERVED_NAMES = frozenset({"seed", "score", "value", "status", "error", "traceback", "elapsed_s",
                            "cached", "key", "row", "started_at", "host", "pid"})


def _plain_value(value: Any, where: str) -> Any:
    """Return ``value`` as a JSON scalar (numpy scalars unwrapped) or raise."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where} must be finite, got {value!r}")
        return value
    raise TypeError(f"{where} must be a number, string, bool or None (a JSON scalar), "
                    f"got {value!r} ({type(value).__name__})")


def _axis_values(name: str, values: Any, kind: str) -> tuple:
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"{kind} axis names must be Python identifiers, got {name!r}")
    if name in RESERVED_NAMES:
        raise ValueError(f"{kind} axis {name!r} uses a reserved column name; reserved: "
                         f"{', '.join(sorted(RESERVED_NAMES))} (seeds go in Grid(seeds=...))")
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise TypeError(f"{kind} axis {name!r} must be a list of values, got {values!r}")
    values = tuple(_plain_value(v, f"{kind} axis {name!r} value") for v in values)
    if not values:
        raise ValueError(f"{kind} axis {name!r} is empty: an empty axis gives an empty grid")
    return values


@dataclasses.dataclass(frozen=True)
class Grid:
    """Cells of a sweep: a Cartesian product of axes, zipped axes and seeds.

    The cells are

    .. math::

        \\{(p, z_j, s) : p \\in \\textstyle\\prod_a P_a,\\ j < m,\\ s \\in S\\},

    i.e. every combination of the ``product`` axes, times the ``m`` aligned
    entries of the ``zipped`` axes (all of length ``m``), times every seed.

    Parameters
    ----------
    product : mapping of str to list, optional
        Axes combined in a Cartesian product.
    zipped : mapping of str to list, optional
        Axes of equal length varied together (``n[j]`` goes with ``batch[j]``).
    seeds : list of int, default (0,)
        Seeds; each parameter combination runs once per seed.

    Examples
    --------
    >>> g = Grid(product={"eps": [0.1, 0.2], "dim": [8, 16]},
    ...          zipped={"n": [100, 200], "batch": [10, 20]}, seeds=[0, 1, 2])
    >>> len(g)
    24
    """

    product: Mapping[str, Sequence[Any]] = dataclasses.field(default_factory=dict)
    zipped: Mapping[str, Sequence[Any]] = dataclasses.field(default_factory=dict)
    seeds: Sequence[int] = (0,)

    def __post_init__(self) -> None:
        if not isinstance(self.product, Mapping):
            raise TypeError(f"product must be a mapping name -> list of values, got {type(self.product).__name__}")
        if not isinstance(self.zipped, Mapping):
            raise TypeError(f"zipped must be a mapping name -> list of values, got {type(self.zipped).__name__}")
        product = {k: _axis_values(k, v, "product") for k, v in self.product.items()}
        zipped = {k: _axis_values(k, v, "zipped") for k, v in self.zipped.items()}
        both = sorted(set(product) & set(zipped))
        if both:
            raise ValueError(f"axes {both} appear in both product and zipped")
        lengths = {k: len(v) for k, v in zipped.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError("zipped axes must have the same length, got "
                             + ", ".join(f"{k}: {n}" for k, n in lengths.items()))
        if isinstance(self.seeds, (str, bytes)) or not isinstance(self.seeds, Iterable):
            raise TypeError(f"seeds must be a list of integers, got {self.seeds!r}")
        seeds = tuple(check_int(s.item() if isinstance(s, np.generic) else s, "seeds entry")
                      for s in self.seeds)
        if not seeds:
            raise ValueError("seeds is empty: give at least one seed (default (0,))")
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be distinct, got {list(seeds)}")
        object.__setattr__(self, "product", product)
        object.__setattr__(self, "zipped", zipped)
        object.__setattr__(self, "seeds", seeds)

    @property
    def names(self) -> tuple[str, ...]:
        """Parameter names: product axes, then zipped axes."""
        return (*self.product, *self.zipped)

    def __len__(self) -> int:
        n_zip = len(next(iter(self.zipped.values()))) if self.zipped else 1
        return math.prod(len(v) for v in self.product.values()) * n_zip * len(self.seeds)

    def params(self) -> Iterator[dict[str, Any]]:
        """Parameter combinations (without seeds), product axes varying slowest."""
        zipped_rows = (list(zip(*self.zipped.values())) if self.zipped else [()])
        for combo in itertools.product(*self.product.values()):
            for zrow in zipped_rows:
                yield {**dict(zip(self.product, combo)), **dict(zip(self.zipped, zrow))}

    def cells(self) -> Iterator[tuple[dict[str, Any], int]]:
        """``(params, seed)`` for every cell."""
        for p in self.params():
            for seed in self.seeds:
                yield p, seed

    def to_dict(self) -> dict:
        """JSON-ready form, inverse of :meth:`from_dict`."""
        return {"product": {k: list(v) for k, v in self.product.items()},
                "zipped": {k: list(v) for k, v in self.zipped.items()},
                "seeds": list(self.seeds)}

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> "Grid":
        """Build a grid from ``{"product": {...}, "zipped": {...}, "seeds": [...]}``."""
        if not isinstance(spec, Mapping):
            raise TypeError(f"grid spec must be a mapping, got {type(spec).__name__}")
        unknown = sorted(set(spec) - {"product", "zipped", "seeds"})
        if unknown:
            raise ValueError(f"unknown grid keys {unknown}; expected 'product', 'zipped', 'seeds'")
        return cls(product=spec.get("product", {}), zipped=spec.get("zipped", {}),
                   seeds=spec.get("seeds", (0,)))

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "Grid":
        """Read a grid from a ``.json`` or ``.toml`` file (same keys as :meth:`from_dict`)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"grid file {str(path)!r} does not exist")
        if path.suffix.lower() not in (".json", ".toml"):
            raise ValueError(f"grid file must end in .json or .toml, got {path.name!r}")
        spec = read_config_file(path, "grid file")
        return cls.from_dict(spec)
