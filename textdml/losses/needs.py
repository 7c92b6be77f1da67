"""What a loss asks of the training run, declared in one place: ``LossNeeds``.

Every loss declares ``needs: ClassVar[LossNeeds]`` (readable on the class: the data pipeline picks
the dataset layout before the loss is built); a loss whose needs depend on its arguments (a
wrapper, a per-instance ratio) sets ``self.needs = dataclasses.replace(...)`` in ``__init__``.
Only ``textdml.training.tasks`` and the data pipeline read it: they pick the task, the batch
layout and the cross-device path from it, so a loss never needs a special case elsewhere.

The 13 old class flags (``input_kinds``, ``accepts_indices``, ``gathers``, ``symmetric``, ...)
stay readable for one release as aliases of these fields.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Literal

# Input kinds a loss can train on; the data module maps each to the columns it needs.
InputKind = Literal["pairs", "triplets", "scored_pairs", "scores", "labelled", "texts", "image_text", "labelled_images"]


@dataclass(frozen=True)
class LossNeeds:
    """What a loss needs from the data, the task and the devices (defaults: a plain tuple loss).

    Args:
        input_kinds: the dataset layouts the loss trains on (see ``textdml.data.roles``).
        accepts_indices: mined tuples (``indices``) change what the loss computes.
        gathers: across devices, anchors meet every device's rows (``textdml.distributed``);
            False for class-level and per-row losses, whose terms need no other device's rows.
        symmetric: the loss averages two directions (anchors pick refs, refs pick anchors);
            across devices they run as two gathered calls.
        takes_scores: learns from ``(anchor, positive, score)`` pairs in the loss's ``score_range``.
        takes_teacher_scores: can learn from a teacher's precomputed scores (a ``score`` column).
        teacher_role: the argument naming a frozen model the task loads (``"teacher"``, ``"guide"``).
        twin: trains a copy of the model beside it (contrastive tension).
        decoder: trains a decoder on the embeddings (TSDAE).
        tie_encoder_decoder: the decoder shares the encoder's weights.
        deletion_ratio: share of words the collator deletes from the encoder's input (denoising).
        mini_batch_size: the loss's own GradCache mini-batch size (cached losses).
        embedding_regularizer: ``embedding_regularizer=`` may add a penalty on the embeddings.
        sparse_model: the loss trains a sparse (SPLADE) model (``model.kind: sparse``), and only one.
    """

    input_kinds: tuple[InputKind, ...] = ("pairs", "triplets", "labelled")
    accepts_indices: bool = False
    gathers: bool = True
    symmetric: bool = False
    takes_scores: bool = False
    takes_teacher_scores: bool = False
    teacher_role: str | None = None
    twin: bool = False
    decoder: bool = False
    tie_encoder_decoder: bool = True
    deletion_ratio: float | None = None
    mini_batch_size: int | None = None
    embedding_regularizer: bool = True
    sparse_model: bool = False


# A loss that declares nothing (user code under ``target:`` that is not a ``BaseLoss``) is treated
# as the run treated it before needs existed: every text layout, tuples taken.
UNDECLARED = LossNeeds(input_kinds=("pairs", "triplets", "scored_pairs", "labelled"), accepts_indices=True)


def loss_needs(loss: Any) -> LossNeeds:
    """The needs of a loss (instance or class); ``UNDECLARED`` for one that declares none."""
    needs = getattr(loss, "needs", None)
    return needs if isinstance(needs, LossNeeds) else UNDECLARED


class FlagAlias:
    """An old flag name read from ``needs``, on the class and on the instance (one release).

    Setting it still works (user losses written before ``LossNeeds``) but warns: the value goes
    into the instance's ``needs``.
    """

    def __init__(self, field: str):
        self.field = field

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type) -> Any:
        return getattr((owner if obj is None else obj).needs, self.field)

    def __set__(self, obj: Any, value: Any) -> None:
        warnings.warn(f"{type(obj).__name__}.{self.name} is read from needs: set "
                      f"self.needs = dataclasses.replace(self.needs, {self.field}=...)", DeprecationWarning, stacklevel=2)
        obj.needs = replace(obj.needs, **{self.field: value})


class DeclaresNeeds:
    """Mixin: ``needs`` plus the old flag names as aliases; folds old-style class flags of subclasses."""

    needs: ClassVar[LossNeeds] = LossNeeds()

    # The old flag names (one release).
    input_kinds = FlagAlias("input_kinds")
    accepts_indices = FlagAlias("accepts_indices")
    gathers = FlagAlias("gathers")
    symmetric = FlagAlias("symmetric")
    takes_scores = FlagAlias("takes_scores")
    takes_teacher_scores = FlagAlias("takes_teacher_scores")
    teacher_role = FlagAlias("teacher_role")
    needs_twin = FlagAlias("twin")
    needs_decoder = FlagAlias("decoder")
    tie_encoder_decoder = FlagAlias("tie_encoder_decoder")
    deletion_ratio = FlagAlias("deletion_ratio")
    mini_batch_size = FlagAlias("mini_batch_size")
    accepts_embedding_regularizer = FlagAlias("embedding_regularizer")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # A subclass written before LossNeeds (``gathers = False`` in its body) keeps working.
        old = {name: value for name, value in cls.__dict__.items()
               if name in FLAG_FIELDS and not hasattr(value, "__get__")}
        if old:
            warnings.warn(f"{cls.__name__} sets {', '.join(sorted(old))} as class flags: declare "
                          "needs = LossNeeds(...) instead", DeprecationWarning, stacklevel=2)
            for name in old:
                delattr(cls, name)
            cls.needs = replace(cls.needs, **{FLAG_FIELDS[name]: value for name, value in old.items()})


# Old flag name -> LossNeeds field.
FLAG_FIELDS: dict[str, str] = {name: alias.field for name, alias in vars(DeclaresNeeds).items()
                               if isinstance(alias, FlagAlias)}
