"""Code textdml is told to run: say which files, before they run, with one warning.

Two settings run Python files that are not textdml's or a library's:

- ``trust_remote_code: true`` runs the files named by ``auto_map`` in a model's ``config.json``
  and ``tokenizer_config.json`` (``module.Class``, or ``repo--module.Class`` for code in another
  repository). A saved model keeps copies of them, and its model card says so.
  :func:`warn_remote_code` is called wherever a model is loaded with it.
- a dotted ``target`` (``loss.target``, ``miner.target``, a regularizer's or an image tower's
  ``target``, ``training.callbacks``) imports its module, which runs it; the module may be the
  code of a model folder (one on ``sys.path``, or ``transformers``' cache of remote code).
  :func:`warn_target_code` is called wherever a target is imported.
"""

from __future__ import annotations

import importlib.machinery
import json
import logging
import sys
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

CONFIG_FILES = ("config.json", "tokenizer_config.json")
# Targets in these packages (textdml and what it is built on) are library code: no warning.
LIBRARY_PACKAGES = frozenset({"textdml", "torch", "torchvision", "transformers", "sentence_transformers",
                              "pytorch_metric_learning", "open_clip", "timm", "peft", "accelerate"})
TRUST = "trust it as you would a program you install"
_warned_targets: set[str] = set()


def warn_code(setting: str, runs: str) -> None:
    """The one warning for code that runs because ``setting`` says so; ``runs`` says what runs."""
    logger.warning("%s: %s on this machine; %s", setting, runs, TRUST)


def auto_map_files(config: dict[str, Any]) -> list[str]:
    """``{"AutoModel": "modeling_x.XModel"}`` -> ``["modeling_x.py"]`` (``repo--mod.C`` -> ``repo/mod.py``)."""
    found: list[str] = []
    for value in (config.get("auto_map") or {}).values():
        for ref in value if isinstance(value, (list, tuple)) else [value]:
            if not isinstance(ref, str) or "." not in ref:
                continue
            repo, _, module = ref.rpartition("--")
            name = module.rsplit(".", 1)[0].replace(".", "/") + ".py"
            name = f"{repo}/{name}" if repo else name
            if name not in found:
                found.append(name)
    return found


def read_model_configs(name_or_path: str) -> list[dict[str, Any]] | None:
    """The model's config files as dicts (a local folder, or the Hub cache); None if none can be read."""
    folder = Path(name_or_path).expanduser()
    texts: list[str] = []
    if folder.is_dir():
        texts = [(folder / name).read_text() for name in CONFIG_FILES if (folder / name).is_file()]
    else:
        try:
            from huggingface_hub import try_to_load_from_cache

            for name in CONFIG_FILES:
                cached = try_to_load_from_cache(name_or_path, name)
                if isinstance(cached, str):
                    texts.append(Path(cached).read_text())
        except Exception:  # noqa: BLE001  (a Hub id not in the cache: nothing to list)
            texts = []
    configs = []
    for text in texts:
        try:
            data = json.loads(text)
        except ValueError:
            continue
        if isinstance(data, dict):
            configs.append(data)
    return configs or None


def remote_code_files(name_or_path: str) -> list[str] | None:
    """The Python files ``trust_remote_code`` would run for this model; None when they cannot be listed."""
    configs = read_model_configs(name_or_path)
    if configs is None:
        return None
    files: list[str] = []
    for config in configs:
        files += [f for f in auto_map_files(config) if f not in files]
    return files


def warn_remote_code(name_or_path: str) -> list[str] | None:
    """Log which files of ``name_or_path`` will run; returns them (None: unknown before loading)."""
    files = remote_code_files(name_or_path)
    if files is None:
        warn_code("trust_remote_code=true", f"{name_or_path} may run its own Python code (its files could not be "
                  "listed before loading)")
    elif files:
        warn_code("trust_remote_code=true", f"loading {name_or_path} runs its Python files {', '.join(files)} (a "
                  "saved model keeps copies of them)")
    else:
        logger.warning("trust_remote_code=true, but %s ships no code of its own (no auto_map): the setting "
                       "is not needed", name_or_path)
    return files


def warn_target_code(target: str, setting: str) -> None:
    """Warn (once per target) before a dotted ``target`` outside textdml and its libraries is imported.

    Importing runs the module: name its file, and the model folder it belongs to when it is one.
    """
    module_name = target.rpartition(".")[0]
    top = module_name.split(".")[0]
    if not module_name or top in LIBRARY_PACKAGES or top in sys.stdlib_module_names or target in _warned_targets:
        return
    _warned_targets.add(target)
    file = module_file(module_name)
    where = f"{module_name} ({file})" if file else module_name
    folder = model_folder_of(file) if file else None
    origin = f", code that came with the model folder {folder}" if folder else ""
    warn_code(setting, f"{target!r} imports and runs {where}{origin}")


def module_file(module_name: str) -> str | None:
    """The file ``import module_name`` would run, found without running anything (None: not found)."""
    loaded = sys.modules.get(module_name)
    if loaded is not None:
        return getattr(loaded, "__file__", None)
    spec, path = None, None
    parts = module_name.split(".")
    for i in range(len(parts)):
        try:
            spec = importlib.machinery.PathFinder.find_spec(".".join(parts[: i + 1]), path)
        except (ImportError, ValueError):
            return None
        if spec is None:
            return None
        path = list(spec.submodule_search_locations or [])
    return spec.origin if spec is not None and spec.origin not in (None, "namespace") else None


def model_folder_of(file: str) -> Path | None:
    """The model folder holding ``file`` (its folder or the one above has a ``config.json``), or None."""
    for folder in list(Path(file).resolve().parents)[:2]:
        # transformers copies a model's remote code to transformers_modules/<model>/ (no config.json there)
        if (folder / "config.json").is_file() or folder.parent.name == "transformers_modules":
            return folder
    return None
