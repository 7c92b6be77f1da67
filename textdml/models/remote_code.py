"""``model.trust_remote_code: true`` runs Python files that come with the model: say which, before.

The files are those named by ``auto_map`` in the model's ``config.json`` and
``tokenizer_config.json`` (``module.Class``, or ``repo--module.Class`` for code in another
repository). A saved model keeps copies of them, and its model card says so.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

CONFIG_FILES = ("config.json", "tokenizer_config.json")


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
        logger.warning("model.trust_remote_code=true: %s may run its own Python code on this machine (its files "
                       "could not be listed before loading); trust it as you would a program you install",
                       name_or_path)
    elif files:
        logger.warning("model.trust_remote_code=true: loading %s runs its Python files %s on this machine; the "
                       "saved model keeps copies of them. Trust them as you would a program you install",
                       name_or_path, ", ".join(files))
    else:
        logger.warning("model.trust_remote_code=true, but %s ships no code of its own (no auto_map): the setting "
                       "is not needed", name_or_path)
    return files
