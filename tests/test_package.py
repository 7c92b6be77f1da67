"""The package surface: public names from ``textdml`` itself, a light import, lean runtime dependencies."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import textdml

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).parents[1]


def test_public_api_is_importable_from_the_package():
    from textdml import (  # noqa: F401
        DualEncoder,
        Embedder,
        InformationRetrievalEvaluator,
        Trainer,
        TrainingConfig,
        distances,
        index_documents,
        losses,
        miners,
        search,
        train,
    )

    assert Embedder.__module__ == "textdml.models.embedder"
    assert losses.InfoNCELoss.__name__ == "InfoNCELoss"
    assert set(textdml.__all__) == {"__version__", *textdml._EXPORTS}
    for name in textdml.__all__:
        assert getattr(textdml, name) is not None, name
    assert set(textdml.__all__) <= set(dir(textdml))


def test_hard_negative_mining_is_importable_from_the_package():
    # The README's mining section calls it from the package root.
    from textdml import mine_hard_negatives
    from textdml.mining.hard_negatives import mine_hard_negatives as defined

    assert mine_hard_negatives is defined
    assert "mine_hard_negatives" in textdml.__all__


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        textdml.Nope  # noqa: B018


def test_import_textdml_stays_light():
    code = "import sys, textdml; print(sorted(m for m in ('torch', 'transformers', 'qdrant_client') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def imported_top_level_modules() -> set[str]:
    names = set()
    for path in (ROOT / "textdml").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    return names


def requirement_name(requirement: str) -> str:
    for stop in "<>=!~[; ":
        requirement = requirement.split(stop)[0]
    return requirement.strip().lower()


def module_names(distribution: str) -> set[str]:
    """The top-level modules an installed distribution provides (pyyaml -> yaml, qdrant-edge-py -> qdrant_edge)."""
    import importlib.metadata

    normalized = distribution.replace("_", "-").lower()
    names = {module for module, dists in importlib.metadata.packages_distributions().items()
             if any(d.replace("_", "-").lower() == normalized for d in dists)}
    return names or {normalized.replace("-", "_")}


def test_runtime_dependencies_are_what_the_runtime_imports():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = [requirement_name(r) for r in project["dependencies"]]
    imported = imported_top_level_modules()
    unused = [name for name in runtime if not module_names(name) & imported]
    assert not unused, f"runtime dependencies the package never imports: {unused}"
    assert "sentence_transformers" not in imported
    assert "sentence-transformers" in [requirement_name(r) for r in project["optional-dependencies"]["test"]]


def test_saved_versions_without_sentence_transformers(monkeypatch):
    import importlib.metadata

    from textdml.models.embedder import package_versions

    real = importlib.metadata.version

    def version(name):
        if name == "sentence-transformers":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "version", version)
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # importing it would fail
    versions = package_versions()
    assert "sentence_transformers" not in versions and versions["textdml"] == textdml.__version__
