"""One registry helper for every kind of named plug-in in geoalign.

Models, data sources, studies, figures, comparison methods and CLI commands are
all kept in a :class:`Registry`: a mapping ``name -> target`` where a target is
either the object itself or a lazy ``"package.module:attr"`` string, imported
only when the entry is first used (so listing names, or ``import geoalign``,
imports nothing heavy).  Entries are added by a call or as a decorator::

    MODELS = Registry("model", {"qsma": "geoalign.models.qsma:QSMA"})
    MODELS.register("mine", "mypackage.models:Mine")   # call, lazy

    @MODELS.register("other")                          # decorator, eager
    class Other: ...

``registry[name]`` returns the resolved object (imported on first access and
cached); :meth:`Registry.target` returns what was registered.  An unknown name
raises :class:`UnknownNameError` (both a ``KeyError`` and a ``ValueError``)
that names the kind and lists the registered names; a lazy entry that cannot be
imported raises ``ImportError`` naming the entry -- nothing is silently skipped.
"""
from __future__ import annotations

import importlib
from collections.abc import MutableMapping
from typing import Any, Callable, Iterator

__all__ = ["Registry", "UnknownNameError", "resolve_target", "is_lazy_target"]


class UnknownNameError(KeyError, ValueError):
    """A name that is not registered (a ``KeyError`` for mappings, a ``ValueError`` for callers)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def is_lazy_target(target: Any) -> bool:
    """Whether ``target`` is a lazy ``"module:attr"`` reference."""
    if not isinstance(target, str):
        return False
    module, sep, attr = target.partition(":")
    return bool(sep and module and attr)


def resolve_target(target: str) -> Any:
    """Import ``"package.module:attr"`` (``attr`` may be dotted) and return the attribute."""
    if not is_lazy_target(target):
        raise ValueError(f"a lazy registry target must look like 'package.module:attr', got {target!r}")
    module, _, attr = target.partition(":")
    try:
        obj = importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"cannot import module {module!r} of registry target {target!r}: {exc}") from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ImportError(f"registry target {target!r}: module {module!r} has no attribute "
                              f"{attr!r}") from None
    return obj


class Registry(MutableMapping):
    """Named entries of one kind, lazily imported.

    Parameters
    ----------
    kind : str
        What the entries are (``"model"``, ``"study"``, ...), used in messages.
    entries : dict, optional
        Initial ``name -> target`` entries (objects or ``"module:attr"`` strings).
    loader : callable, optional
        Applied to a lazy target once it is imported (for example to read the
        metadata a decorator attached to a function); default: the object itself.
    """

    def __init__(self, kind: str, entries: dict[str, Any] | None = None, *,
                 loader: Callable[[Any], Any] | None = None):
        self.kind = kind
        self._targets: dict[str, Any] = {}
        self._resolved: dict[str, Any] = {}
        self._loader = loader
        for name, target in (entries or {}).items():
            self.register(name, target)

    # -- registration -------------------------------------------------------------------
    def _check_name(self, name: Any) -> str:
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.kind} name must be a non-empty string, got {name!r}")
        return name

    def register(self, name: str, target: Any = None, *, replace: bool = False):
        """Register ``target`` under ``name``; without ``target``, return a decorator.

        ``target`` is the object or a lazy ``"module:attr"`` string.  A name that is
        taken raises ``ValueError`` unless ``replace=True``.
        """
        self._check_name(name)
        if target is None:
            def decorator(obj):
                self.register(name, obj, replace=replace)
                return obj

            return decorator
        if isinstance(target, str) and not is_lazy_target(target):
            raise ValueError(f"{self.kind} {name!r}: a string target must look like "
                             f"'package.module:attr', got {target!r}")
        if name in self._targets and not replace and self._targets[name] is not target:
            raise ValueError(f"{self.kind} {name!r} is already registered "
                             f"(as {self._describe(self._targets[name])}); pass replace=True to replace it")
        self._targets[name] = target
        self._resolved.pop(name, None)
        return target

    @staticmethod
    def _describe(target: Any) -> str:
        if isinstance(target, str):
            return repr(target)
        return f"{getattr(target, '__module__', '?')}:{getattr(target, '__qualname__', type(target).__name__)}"

    # -- lookup ------------------------------------------------------------------------------
    def target(self, name: str) -> Any:
        """What was registered under ``name`` (an object or a ``"module:attr"`` string)."""
        if not isinstance(name, str) or name not in self._targets:
            raise self._unknown(name)
        return self._targets[name]

    def _unknown(self, name: Any) -> UnknownNameError:
        return UnknownNameError(f"unknown {self.kind} {name!r}; registered: "
                                f"{', '.join(sorted(self._targets)) or 'none'}")

    def __getitem__(self, name: str) -> Any:
        if isinstance(name, str) and name in self._resolved:
            return self._resolved[name]
        target = self.target(name)
        if is_lazy_target(target):
            obj = resolve_target(target)
            if self._loader is not None:
                obj = self._loader(obj)
            # the import may have re-registered the name (a decorator on the target): keep that
            if self._targets.get(name) is target:
                self._resolved[name] = obj
            return obj
        return target

    def __setitem__(self, name: str, target: Any) -> None:
        self.register(name, target, replace=True)

    def __delitem__(self, name: str) -> None:
        if name not in self._targets:
            raise self._unknown(name)
        del self._targets[name]
        self._resolved.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._targets))

    def __len__(self) -> int:
        return len(self._targets)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._targets

    def is_loaded(self, name: str) -> bool:
        """Whether ``name`` is an object or an already imported lazy entry."""
        return name in self._resolved or not is_lazy_target(self.target(name))

    def load_all(self) -> dict[str, Any]:
        """Resolve every entry (importing the lazy ones); ``{name: object}`` in registration order."""
        return {name: self[name] for name in self}

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self)} entries: {', '.join(self._targets)})"
