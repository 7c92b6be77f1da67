"""constraints.txt pins every package the set-up installs, inside the ranges pyproject.toml declares,
so a fresh machine gets the versions the suite last passed with (issue 20)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
# setup.sh pins these itself: the local CPU build differs from the quickstart's to the test set-up's.
PINNED_BY_SETUP = {"torch", "torchvision"}


def read_constraints() -> dict[str, str]:
    pins = {}
    for number, line in enumerate((ROOT / "constraints.txt").read_text().splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        assert match, f"constraints.txt line {number} is not 'name==version': {line!r}"
        pins[canonicalize_name(match[1])] = match[2]
    return pins


def declared_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return [Requirement(text) for text in [*project["dependencies"], *(r for group in extras.values() for r in group)]
            if not text.startswith("textdml")]


def test_every_declared_package_is_pinned_inside_its_range() -> None:
    pins = read_constraints()
    for requirement in declared_requirements():
        name = canonicalize_name(requirement.name)
        if name in PINNED_BY_SETUP:
            assert name not in pins, f"{name} is pinned by scripts/setup.sh, not constraints.txt"
            continue
        assert name in pins, f"{requirement} is not in constraints.txt: run bash scripts/check_newest.sh --lock"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {name}=={pins[name]}, outside pyproject.toml's '{requirement}'")


def test_setup_installs_with_the_constraints() -> None:
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert 'constraints="${TEXTDML_CONSTRAINTS:-constraints.txt}"' in setup and '-c "$constraints"' in setup
    assert "bash scripts/check_newest.sh" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.parametrize("name", sorted(PINNED_BY_SETUP))
def test_setup_pins_torch_itself(name: str) -> None:
    assert re.search(rf'"{name}==[0-9.]+"', (ROOT / "scripts" / "setup.sh").read_text())
