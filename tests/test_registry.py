"""The registry's tables: built-in data sets are looked up by name and imported only when used."""

from __future__ import annotations

import subprocess
import sys

import pytest

from textdml.registry import DATASETS, LazyTable


def test_builtin_data_sets_are_listed_without_importing_them():
    code = ("import sys; from textdml.registry import DATASETS; names = DATASETS.names(); "
            "print(names, sorted(m for m in ('datasets', 'textdml.data', 'torch') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "['emoji', 'human_similarity', 'wordnet'] []"


def test_builtin_data_set_resolves_to_its_builder():
    from textdml.data.wordnet import load_wordnet

    assert "wordnet" in DATASETS
    assert DATASETS.get("wordnet") is load_wordnet


def test_unknown_builtin_data_set_suggests_a_name():
    with pytest.raises(KeyError, match="did you mean 'wordnet'"):
        DATASETS.get("wordnett")


def test_load_data_names_the_builtins_of_an_unknown_one():
    from textdml.data.loading import load_data

    with pytest.raises(ValueError, match=r"unknown builtin data set 'textdml:nope'; builtins: \['emoji', "):
        load_data("textdml:nope")


def test_registering_a_builder_and_refusing_a_second_one():
    table: LazyTable = LazyTable("data set", {"lazy": "textdml.data.wordnet:load_wordnet"})

    @table.register("mine")
    def build_mine(split: str = "train", name: str | None = None) -> list:
        return [split]

    assert table.names() == ["lazy", "mine"]
    assert table.get("mine") is build_mine
    table.register("mine")(build_mine)  # the same builder again is fine
    with pytest.raises(ValueError, match="registered twice"):
        table.register("mine")(lambda **kwargs: [])


def test_builtin_source_still_registers_through_loading():
    from textdml.data.loading import builtin_source, load_data

    @builtin_source("test_only_rows")
    def rows(split: str = "train", name: str | None = None):
        from datasets import Dataset

        return Dataset.from_list([{"text": f"{split} {name}"}])

    try:
        assert load_data("textdml:test_only_rows", name="x")["text"] == ["train x"]
    finally:
        DATASETS._entries.pop("test_only_rows")
