"""WordNet 3.0 (Debian's ``wordnet-base``) as ``datasets`` tables, built offline.

WordNet is released by Princeton University under a permissive licence: "WordNet 3.0 Copyright
2006 by Princeton University. All rights reserved." The data is read at run time from the
installed package; nothing is copied into this repository.

Variants (``load_data("textdml:wordnet", name=...)``):

- ``example_definition``: pairs (usage example -> definition of its synset), with held-out synsets.
- ``word_definition``: pairs (a lemma of the synset -> definition).
- ``definition_hypernym``: labelled definitions, the label being the synset's direct hypernym
  (siblings share a class); classes are split into training and held-out classes (open-set).
- ``definition_lexname``: labelled definitions by lexicographer file (45 coarse classes).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from datasets import Dataset

WORDNET_DIR = Path(os.environ.get("TEXTDML_WORDNET_DIR", "/usr/share/wordnet"))
POS_FILES = {"noun": "n", "verb": "v", "adj": "a", "adv": "r"}
LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body noun.cognition "
    "noun.communication noun.event noun.feeling noun.food noun.group noun.location noun.motive noun.object "
    "noun.person noun.phenomenon noun.plant noun.possession noun.process noun.quantity noun.relation noun.shape "
    "noun.state noun.substance noun.time verb.body verb.change verb.cognition verb.communication verb.competition "
    "verb.consumption verb.contact verb.creation verb.emotion verb.motion verb.perception verb.possession "
    "verb.social verb.stative verb.weather adj.ppl"
).split()
EXAMPLE = re.compile(r'"([^"]+)"')


@dataclass(frozen=True)
class Synset:
    id: str  # e.g. "n02084071"
    lexname: str
    words: tuple[str, ...]
    definition: str
    examples: tuple[str, ...]
    hypernyms: tuple[str, ...]


def parse_data_line(line: str, pos: str) -> Synset:
    """One line of ``data.<pos>`` (format: ``man 5 wndb``)."""
    fields_part, _, gloss = line.partition(" | ")
    fields = fields_part.split()
    offset, lex_filenum, word_count = fields[0], int(fields[1]), int(fields[3], 16)
    words = tuple(fields[4 + 2 * i].replace("_", " ") for i in range(word_count))
    i = 4 + 2 * word_count
    pointer_count = int(fields[i])
    hypernyms = []
    for k in range(pointer_count):
        symbol, target, target_pos = fields[i + 1 + 4 * k : i + 4 + 4 * k]
        if symbol in ("@", "@i"):
            hypernyms.append(f"{target_pos.replace('s', 'a')}{target}")
    gloss = gloss.strip()
    examples = tuple(e.strip() for e in EXAMPLE.findall(gloss) if e.strip())
    definition = gloss.split('"', 1)[0].strip().rstrip(";").strip()
    return Synset(f"{pos}{offset}", LEXNAMES[lex_filenum], words, definition, examples, tuple(hypernyms))


@lru_cache(maxsize=1)
def read_synsets(root: str | None = None) -> tuple[Synset, ...]:
    """Every synset of WordNet 3.0 (117,659)."""
    directory = Path(root) if root else WORDNET_DIR
    synsets = []
    for name, pos in POS_FILES.items():
        path = directory / f"data.{name}"
        if not path.exists():
            raise FileNotFoundError(
                f"WordNet 3.0 not found ({path} is missing). Install it with "
                "`apt-get install -y wordnet-base`, or point TEXTDML_WORDNET_DIR at a folder holding data.noun etc."
            )
        with open(path, encoding="latin-1") as file:
            for line in file:
                if not line.startswith("  "):  # the licence header lines start with two spaces
                    synsets.append(parse_data_line(line, pos))
    return tuple(synsets)


def in_held_out(key: str, held_out_fraction: float, seed: int) -> bool:
    """A deterministic split by key: the same key always lands on the same side."""
    digest = hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64 < held_out_fraction


def check_split(split: str) -> None:
    if split not in ("train", "test"):
        raise ValueError(f"WordNet splits are 'train' and 'test' (held out), got {split!r}")


def load_wordnet(split: str = "train", name: str | None = None, held_out_fraction: float = 0.1,
                 seed: int = 0, min_class_size: int = 4) -> Dataset:
    """Build a WordNet variant (see the module docstring); ``split`` is ``train`` or ``test``."""
    check_split(split)
    builders = {"example_definition": example_definition_pairs, "word_definition": word_definition_pairs,
                "definition_hypernym": definition_by_hypernym, "definition_lexname": definition_by_lexname}
    name = name or "example_definition"
    if name not in builders:
        raise ValueError(f"unknown WordNet variant {name!r}; variants: {sorted(builders)}")
    if name.startswith("definition_"):
        return builders[name](split, held_out_fraction, seed, min_class_size)
    return builders[name](split, held_out_fraction, seed)


def example_definition_pairs(split: str, held_out_fraction: float, seed: int) -> Dataset:
    """(usage example -> definition) pairs; test synsets never appear in training."""
    rows: dict[str, list] = {"anchor": [], "positive": [], "synset": []}
    for synset in read_synsets():
        if (split == "test") != in_held_out(synset.id, held_out_fraction, seed):
            continue
        for example in synset.examples:
            rows["anchor"].append(example)
            rows["positive"].append(synset.definition)
            rows["synset"].append(synset.id)
    return Dataset.from_dict(rows)


def word_definition_pairs(split: str, held_out_fraction: float, seed: int) -> Dataset:
    """(lemma -> definition) pairs, held out by synset."""
    rows: dict[str, list] = {"anchor": [], "positive": [], "synset": []}
    for synset in read_synsets():
        if (split == "test") != in_held_out(synset.id, held_out_fraction, seed):
            continue
        for word in synset.words:
            rows["anchor"].append(word)
            rows["positive"].append(synset.definition)
            rows["synset"].append(synset.id)
    return Dataset.from_dict(rows)


def labelled_definitions(split: str, class_of: dict[str, str], held_out_fraction: float, seed: int,
                         min_class_size: int) -> Dataset:
    """Definitions labelled by ``class_of[synset id]``; whole classes go to train or test."""
    members: dict[str, list[Synset]] = {}
    for synset in read_synsets():
        if synset.id in class_of:
            members.setdefault(class_of[synset.id], []).append(synset)
    rows: dict[str, list] = {"anchor": [], "label": [], "synset": []}
    for label in sorted(members):
        group = members[label]
        if len(group) < min_class_size or (split == "test") != in_held_out(label, held_out_fraction, seed):
            continue
        for synset in group:
            rows["anchor"].append(synset.definition)
            rows["label"].append(label)
            rows["synset"].append(synset.id)
    return Dataset.from_dict(rows)


def definition_by_hypernym(split: str, held_out_fraction: float, seed: int, min_class_size: int) -> Dataset:
    """Definitions labelled by their first direct hypernym: co-hyponyms are one class."""
    class_of = {s.id: s.hypernyms[0] for s in read_synsets() if s.hypernyms}
    return labelled_definitions(split, class_of, held_out_fraction, seed, min_class_size)


def definition_by_lexname(split: str, held_out_fraction: float, seed: int, min_class_size: int) -> Dataset:
    """Definitions labelled by lexicographer file (noun.animal, verb.motion, ...)."""
    class_of = {s.id: s.lexname for s in read_synsets()}
    return labelled_definitions(split, class_of, max(held_out_fraction, 0.3), seed, min_class_size)
