"""Named component registries.

Each kind of component (backbone, pooling, head, ...) has one :class:`Registry`. A component
registers itself with a decorator and is later built by name from a recipe::

    >>> from wildvox.registry import Registry
    >>> TOYS = Registry("toy")
    >>> @TOYS.register("box")
    ... class Box:
    ...     def __init__(self, size: int = 1) -> None:
    ...         self.size = size
    >>> TOYS.build("box", size=3).size
    3
    >>> TOYS.get("ball")
    Traceback (most recent call last):
    ...
    KeyError: "unknown toy 'ball'; valid names: box"

Optional dependencies (declared as extras in ``pyproject.toml``) are imported with
:func:`optional_import`, which turns a missing package into an install hint::

    >>> optional_import("json", "train").__name__
    'json'
    >>> optional_import("no_such_module_xyz", "export")
    Traceback (most recent call last):
    ...
    ImportError: no_such_module_xyz is not installed: pip install 'wildvox[export]'
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """A mapping from snake_case names to classes or factory functions."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator that registers ``obj`` under ``name``; a name can be registered once."""

        def wrap(obj: Callable[..., T]) -> Callable[..., T]:
            if name in self._items:
                raise KeyError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            return obj

        return wrap

    def get(self, name: str) -> Callable[..., T]:
        """The component registered as ``name``; unknown names list the valid ones."""
        try:
            return self._items[name]
        except KeyError:
            valid = ", ".join(sorted(self._items)) or "(none)"
            raise KeyError(f"unknown {self.kind} {name!r}; valid names: {valid}") from None

    def build(self, name: str, /, **kwargs: Any) -> T:
        """Instantiate the component ``name`` with keyword arguments."""
        return self.get(name)(**kwargs)

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)


def optional_import(module: str, extra: str, purpose: str = "") -> ModuleType:
    """Import ``module`` from an optional dependency, or say which extra installs it.

    Args:
        module: the dotted module name, written literally at the call site.
        extra: the ``wildvox[...]`` extra of ``pyproject.toml`` that provides it.
        purpose: what needs it, for the message (``"export-onnx"``); default: the module name.

    Raises:
        ImportError: ``module`` (or a package it needs) is missing; the message gives the
            ``pip install 'wildvox[extra]'`` command and the original error is chained.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing = exc.name or module
        what = f"{purpose} needs {missing}, which" if purpose else missing
        raise ImportError(
            f"{what} is not installed: pip install 'wildvox[{extra}]'", name=missing
        ) from exc


BACKBONES: Registry[Any] = Registry("backbone")
POOLINGS: Registry[Any] = Registry("pooling")
HEADS: Registry[Any] = Registry("head")
FEATURES: Registry[Any] = Registry("feature extractor")
AUGMENTS: Registry[Any] = Registry("augmentation")
