"""Human-scored similarity sets that ship in the ``gensim`` wheel, as ``anchor, positive, score`` pairs.

- ``simlex999``: 999 word pairs, similarity 0-10 (Hill et al., 2015).
- ``wordsim353``: 353 word pairs, relatedness 0-10 (Finkelstein et al., 2002).
- ``lee``: 50 news documents and a 50x50 matrix of mean human similarity (Lee et al., 2005):
  the 1,225 pairs of distinct documents, scored 0-1.

They are read from the installed package (``pip install gensim``) or from an unpacked wheel
(``pip download --no-deps gensim`` then unzip it, and set ``TEXTDML_GENSIM_DATA`` to its
``gensim/test/test_data`` folder); nothing is copied into this repository. Evaluation only: the
sets are too small to train on.

Example (``textdml eval`` with an STS evaluation set)::

    eval:
      data: {path: "textdml:human_similarity", name: simlex999}
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from datasets import Dataset

SETS = ("simlex999", "wordsim353", "lee")
DATA_ENV = "TEXTDML_GENSIM_DATA"


def gensim_test_data() -> Path:
    """The folder that holds gensim's test data (installed package, or ``$TEXTDML_GENSIM_DATA``)."""
    if os.environ.get(DATA_ENV):
        folder = Path(os.environ[DATA_ENV]).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"{DATA_ENV}={folder} is not a folder; point it at gensim/test/test_data")
        return folder
    # find_spec locates the package without importing it (gensim's import pulls in its C extensions).
    spec = importlib.util.find_spec("gensim")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the human-scored similarity sets come from the gensim wheel: pip install gensim==4.4.0 (or "
            f"pip download --no-deps gensim==4.4.0, unzip it and set {DATA_ENV}=<unzipped>/gensim/test/test_data)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "test" / "test_data"


def read_word_pairs(path: Path) -> list[dict]:
    """``word<TAB>word<TAB>score`` lines; ``#`` lines are comments."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        first, second, score = line.split("\t")[:3]
        rows.append({"anchor": first, "positive": second, "score": float(score)})
    return rows


def read_lee_pairs(folder: Path) -> list[dict]:
    """Every pair of distinct Lee documents with its mean human similarity (upper triangle of the matrix)."""
    documents = [line.strip() for line in (folder / "lee.cor").read_text(encoding="latin-1").splitlines()
                 if line.strip()]
    matrix = [[float(v) for v in line.split()] for line in
              (folder / "similarities0-1.txt").read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(matrix) != len(documents) or any(len(row) != len(documents) for row in matrix):
        raise ValueError(f"{folder}: {len(documents)} Lee documents but a {len(matrix)}-row similarity matrix")
    return [{"anchor": documents[i], "positive": documents[j], "score": matrix[i][j]}
            for i in range(len(documents)) for j in range(i + 1, len(documents))]


def load_human_similarity(name: str) -> Dataset:
    """One of :data:`SETS` as a ``Dataset`` with columns ``anchor, positive, score``."""
    if name not in SETS:
        raise ValueError(f"unknown human-scored set {name!r}: use one of {', '.join(SETS)} (train.name / eval.data.name)")
    folder = gensim_test_data()
    if name == "lee":
        return Dataset.from_list(read_lee_pairs(folder))
    return Dataset.from_list(read_word_pairs(folder / ("simlex999.txt" if name == "simlex999" else "wordsim353.tsv")))


def human_similarity_source(split: str = "test", name: str | None = None, **kwargs: object) -> Dataset:
    """``textdml:human_similarity`` with ``name`` one of simlex999, wordsim353, lee (a single split)."""
    if kwargs:
        raise ValueError(f"textdml:human_similarity takes no options, got {sorted(kwargs)}")
    return load_human_similarity(name or "simlex999")
