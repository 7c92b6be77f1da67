from __future__ import annotations

import pytest
import torch
from datasets import Dataset

from textdml.data.collator import RoleCollator, text_ids
from textdml.data.loading import check_text_columns, label_mapping, load_data
from textdml.data.roles import resolve_roles

ALL_KINDS = ("pairs", "triplets", "scored_pairs", "labelled")


@pytest.mark.parametrize(
    ("columns", "rename", "kind"),
    [
        (["anchor", "positive"], {}, "pairs"),
        (["anchor", "positive", "negative"], {}, "triplets"),
        (["anchor", "positive", "negative_2", "negative_1"], {}, "triplets"),
        (["anchor", "positive", "label"], {}, "scored_pairs"),
        (["anchor", "label"], {}, "labelled"),
        (["question", "answer"], {"anchor": "question", "positive": "answer"}, "pairs"),
    ],
)
def test_kind_follows_columns(columns, rename, kind):
    assert resolve_roles(columns, "loss", ALL_KINDS, rename).kind == kind


def test_negatives_in_numeric_order():
    roles = resolve_roles(["anchor", "positive", "negative_10", "negative_2"], "loss", ALL_KINDS)
    assert roles.negatives == ("negative_2", "negative_10")


def test_missing_column_names_column_found_and_loss():
    with pytest.raises(ValueError, match=r"no column for role 'anchor'.*\['question', 'answer'\].*'info_nce'"):
        resolve_roles(["question", "answer"], "info_nce", ("pairs", "triplets"))


def test_misnamed_mapping_names_the_column():
    with pytest.raises(ValueError, match="mapped to column 'querry'"):
        resolve_roles(["query", "answer"], "info_nce", ALL_KINDS, {"anchor": "querry", "positive": "answer"})


def test_misnamed_mapping_suggests_the_closest_column():
    with pytest.raises(ValueError, match=r"^train data 'qa.jsonl': .*'querry'.*did you mean 'query'\?"):
        resolve_roles(["query", "answer"], "info_nce", ALL_KINDS, {"anchor": "querry", "positive": "answer"},
                      source="train data 'qa.jsonl'")


def test_missing_role_suggests_a_near_column_and_the_mapping():
    with pytest.raises(ValueError, match=r"did you mean 'anchors'\? map it with `columns: \{anchor: anchors\}`"):
        resolve_roles(["anchors", "positive"], "info_nce", ALL_KINDS)
    with pytest.raises(ValueError, match=r"did you mean 'positives'\? map it with `columns: \{positive: positives\}`"):
        resolve_roles(["anchor", "positives"], "info_nce", ALL_KINDS)


def test_wrong_column_says_train_or_eval_data_and_the_file(tmp_path):
    from textdml.config import DataConfig, EvalConfig
    from textdml.data.pipeline import resolve_train_set
    from textdml.evaluation.build import build_evaluator

    path = tmp_path / "pairs.jsonl"
    Dataset.from_dict({"question": ["a", "b"], "answer": ["c", "d"]}).to_json(str(path))
    data = DataConfig(path=str(path), columns={"anchor": "questoin", "positive": "answer"})
    with pytest.raises(ValueError, match=rf"^train data '{path}'.*did you mean 'question'"):
        resolve_train_set(load_data(str(path)), data, ("pairs",), "info_nce")
    with pytest.raises(ValueError, match=rf"^eval data '{path}'.*did you mean 'question'"):
        build_evaluator(EvalConfig(data=data))


def test_loss_that_cannot_train_on_the_kind():
    with pytest.raises(ValueError, match="loss 'proxy_anchor' trains on .*labelled.* make it pairs"):
        resolve_roles(["anchor", "positive"], "proxy_anchor", ("labelled",))


def test_none_or_empty_text_names_column_and_row():
    data = Dataset.from_dict({"anchor": ["a", "b", None], "positive": ["x", "", "z"]})
    roles = resolve_roles(data.column_names, "info_nce", ALL_KINDS)
    with pytest.raises(ValueError, match="column 'anchor' row 2 is None"):
        check_text_columns(data, roles)
    with pytest.raises(ValueError, match="column 'positive' row 1 is ''"):
        check_text_columns(data.select([0, 1]), roles)


class FakeTokenizer:
    @staticmethod
    def tokenize(texts):
        return {"input_ids": torch.tensor([[len(t)] for t in texts]), "attention_mask": torch.ones(len(texts), 1)}


fake_tokenize = FakeTokenizer()


def test_pair_labels_mask_duplicate_texts():
    roles = resolve_roles(["anchor", "positive", "negative"], "info_nce", ALL_KINDS)
    rows = [{"anchor": "q1", "positive": "same", "negative": "n1"},
            {"anchor": "q2", "positive": "same", "negative": "other"},
            {"anchor": "q3", "positive": "p3", "negative": "same"}]
    batch = RoleCollator(fake_tokenize, roles)(rows)
    labels, ref_labels = batch["labels"], batch["ref_labels"]
    assert labels[0] == labels[1] != labels[2]
    assert ref_labels.shape == (6,) and ref_labels[5] == labels[0]  # a negative equal to q1's positive is not a negative
    assert torch.equal(text_ids(["same"]), text_ids(["same"]))


def test_list_negative_column_and_unequal_lengths():
    roles = resolve_roles(["anchor", "positive", "negative"], "info_nce", ALL_KINDS, list_columns=["negative"])
    collate = RoleCollator(fake_tokenize, roles)
    batch = collate([{"anchor": "a", "positive": "p", "negative": ["n1", "n2"]},
                     {"anchor": "b", "positive": "q", "negative": ["n3", "n4"]}])
    assert batch["inputs"].role_sizes == [2, 2, 2, 2] and batch["ref_labels"].shape == (6,)
    with pytest.raises(ValueError, match="same number"):
        collate([{"anchor": "a", "positive": "p", "negative": ["n1"]},
                 {"anchor": "b", "positive": "q", "negative": ["n3", "n4"]}])


def test_labelled_rows_get_class_ids():
    data = Dataset.from_dict({"anchor": ["a", "b", "c"], "label": ["dog", "cat", "dog"]})
    roles = resolve_roles(data.column_names, "triplet", ALL_KINDS)
    mapping = label_mapping(data, "label")
    assert mapping == {"cat": 0, "dog": 1}
    batch = RoleCollator(fake_tokenize, roles, mapping)([data[i] for i in range(3)])
    assert batch["labels"].tolist() == [1, 0, 1]


@pytest.mark.parametrize("suffix", ["jsonl", "csv", "parquet"])
def test_local_files_load_through_datasets(tmp_path, suffix):
    data = Dataset.from_dict({"anchor": ["a", "b"], "positive": ["x", "y"]})
    path = tmp_path / f"pairs.{suffix}"
    {"jsonl": data.to_json, "csv": data.to_csv, "parquet": data.to_parquet}[suffix](str(path))
    loaded = load_data(str(path))
    assert loaded.column_names == ["anchor", "positive"] and len(loaded) == 2
    streamed = load_data(str(path), streaming=True)
    assert [row["anchor"] for row in streamed] == ["a", "b"]


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_data(str(tmp_path / "nope.jsonl"))
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(ValueError, match="is empty"):
        load_data(str(tmp_path / "empty.jsonl"))


def test_wordnet_builtin_holds_out_synsets():
    train = load_data("textdml:wordnet", name="example_definition", split="train")
    test = load_data("textdml:wordnet", name="example_definition", split="test")
    assert len(train) > 40_000 and 3_000 < len(test) < 7_000
    assert not set(train["synset"]) & set(test["synset"])
    labelled = load_data("textdml:wordnet", name="definition_hypernym", split="test")
    assert not set(labelled["label"]) & set(load_data("textdml:wordnet", name="definition_hypernym")["label"])


def test_group_column_makes_rows_of_one_group_positives():
    roles = resolve_roles(["anchor", "positive", "group"], "info_nce", ALL_KINDS)
    assert roles.group == "group"
    rows = [{"anchor": "q1", "positive": "p1", "group": "g"}, {"anchor": "q2", "positive": "p2", "group": "g"},
            {"anchor": "q3", "positive": "p3", "group": 7}]
    batch = RoleCollator(fake_tokenize, roles)(rows)
    assert batch["labels"][0] == batch["labels"][1] != batch["labels"][2]
    assert torch.equal(batch["ref_labels"], batch["labels"])  # q1's in-batch "negative" p2 is not a negative
