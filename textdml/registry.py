"""Short, stable names -> classes for every pluggable component.

A recipe says ``loss: {name: proxy_anchor}``; the registry turns that into ``ProxyAnchorLoss``.
Unknown names fail with the closest valid names, and ``target: pkg.module.Class`` is the escape
hatch for user code that is not registered.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def closest_names(name: str, choices: list[str], n: int = 3) -> list[str]:
    """The closest matches of ``name`` among ``choices`` (for 'did you mean' messages)."""
    return difflib.get_close_matches(name, choices, n=n, cutoff=0.5)


def did_you_mean(name: str, choices: list[str]) -> str:
    close = closest_names(name, choices)
    if close:
        return f"did you mean {', '.join(repr(c) for c in close)}?"
    return f"valid names: {', '.join(sorted(choices))}"


class Registry(Generic[T]):
    """A named table of classes of one kind (losses, miners, distances, poolings, ...)."""

    def __init__(self, kind: str, package: str):
        self.kind = kind
        # Modules are imported on first lookup so that `import textdml` stays light.
        self._package = package
        self._entries: dict[str, type[T]] = {}
        self._loaded = False

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        def decorator(cls: type[T]) -> type[T]:
            if name in self._entries and self._entries[name] is not cls:
                raise ValueError(f"{self.kind} name {name!r} is registered twice")
            self._entries[name] = cls
            return cls

        return decorator

    def _load(self) -> None:
        # Every module of the package registers its classes on import; import them all once.
        if not self._loaded:
            package = importlib.import_module(self._package)
            for info in pkgutil.iter_modules(getattr(package, "__path__", [])):
                importlib.import_module(f"{self._package}.{info.name}")
            self._loaded = True

    def names(self) -> list[str]:
        self._load()
        return sorted(self._entries)

    def get(self, name: str) -> type[T]:
        self._load()
        if name not in self._entries:
            raise KeyError(f"unknown {self.kind} {name!r}: {did_you_mean(name, list(self._entries))}")
        return self._entries[name]

    def build(self, name: str | None = None, target: str | None = None, **kwargs: Any) -> T:
        """Instantiate by registry ``name`` or by dotted ``target`` path (user code)."""
        if (name is None) == (target is None):
            raise ValueError(f"a {self.kind} needs exactly one of 'name' or 'target'")
        cls = import_component_class(target, self.kind) if target is not None else self.get(name)  # type: ignore[arg-type]
        try:
            return cls(**kwargs)
        except TypeError as err:
            raise TypeError(f"cannot build {self.kind} {name or target!r} with {kwargs}: {err}") from err

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._entries


class LazyTable(Generic[T]):
    """Short names -> ``"module:attr"`` paths of functions, imported on first look-up.

    For components that are not classes in a package of their own (the built-in data sets):
    the paths are written out so that neither this module nor its callers import them early.
    """

    def __init__(self, kind: str, paths: dict[str, str]):
        self.kind = kind
        self._paths = dict(paths)
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self and self.get(name) is not obj:
                raise ValueError(f"{self.kind} name {name!r} is registered twice")
            self._entries[name] = obj
            return obj

        return decorator

    def names(self) -> list[str]:
        return sorted(set(self._paths) | set(self._entries))

    def get(self, name: str) -> T:
        if name not in self._entries:
            if name not in self._paths:
                raise KeyError(f"unknown {self.kind} {name!r}: {did_you_mean(name, self.names())}")
            module_name, _, attr = self._paths[name].partition(":")
            self._entries[name] = getattr(importlib.import_module(module_name), attr)
        return self._entries[name]

    def __contains__(self, name: str) -> bool:
        return name in self._entries or name in self._paths


def import_target(target: str, setting: str = "target") -> Any:
    """Import ``pkg.module.Attr`` and return ``Attr``.

    ``setting`` (the config key, e.g. ``loss.target``) names the warning that code outside textdml
    and its libraries is about to run (:func:`textdml.models.remote_code.warn_target_code`).
    """
    from textdml.models.remote_code import warn_target_code

    module_name, _, attr = target.rpartition(".")
    if not module_name:
        raise ValueError(f"target {target!r} must be a dotted path like 'my_pkg.losses.MyLoss'")
    warn_target_code(target, setting)
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attr)
    except AttributeError as err:
        raise ValueError(f"target {target!r}: module {module_name!r} has no attribute {attr!r}") from err


def import_component_class(target: str, section: str) -> type:
    """Import ``target`` for a ``{section}: {target: ...}`` spec; it must name a component class.

    A recipe's ``target`` is code that runs (and a recipe should be trusted like code), but it is
    never a free call: it must be a class, and a ``torch.nn.Module`` subclass (textdml losses,
    miners and distances, pytorch-metric-learning's, or your own module), so ``os.system`` or
    ``builtins.eval`` are refused before anything is called.
    """
    import inspect

    from torch import nn

    if not isinstance(target, str):
        raise ValueError(f"{section}.target must be a dotted class path like 'my_pkg.losses.MyLoss', got {target!r}")
    try:
        obj = import_target(target, f"{section}.target")
    except ImportError as err:
        raise ValueError(f"{section}.target {target!r}: cannot import it ({err}); check the module path") from err
    if not inspect.isclass(obj):
        raise ValueError(f"{section}.target {target!r} is a {type(obj).__name__}, not a class: a target must name "
                         "a torch.nn.Module subclass (a textdml or pytorch-metric-learning loss / miner / distance, "
                         "or your own nn.Module)")
    if not issubclass(obj, nn.Module):
        raise ValueError(f"{section}.target {target!r} is a class but not a torch.nn.Module subclass: a target must "
                         "name a loss, miner or distance module (textdml, pytorch-metric-learning, or your own)")
    return obj


LOSSES: Registry[Any] = Registry("loss", "textdml.losses")
MINERS: Registry[Any] = Registry("miner", "textdml.miners")
DISTANCES: Registry[Any] = Registry("distance", "textdml.distances")
EVALUATORS: Registry[Any] = Registry("evaluator", "textdml.evaluation")
REGULARIZERS: Registry[Any] = Registry("regularizer", "textdml.regularizers")
# Data sets textdml builds itself from installed packages (offline): ``path: textdml:<name>``.
DATASETS: LazyTable[Callable[..., Any]] = LazyTable("built-in data set", {
    "emoji": "textdml.data.emoji:load_emoji",
    "human_similarity": "textdml.data.human_scores:human_similarity_source",
    "wordnet": "textdml.data.wordnet:load_wordnet",
})
