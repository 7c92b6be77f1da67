"""How hard negatives are picked: the selection settings, light enough for config validation."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Literal


@dataclass
class MiningSettings:
    """How negatives are picked (sentence-transformers' names and meanings).

    Args:
        num_negatives: negatives per row (columns ``negative_1..k``).
        range_min: skip the ``range_min`` closest candidates (likely unlabelled positives).
        range_max: consider candidates up to this rank; default: ``range_min + num_negatives +
            max positives per anchor`` (``10 * num_negatives`` instead of ``num_negatives`` when a
            margin or score cap may discard candidates). Clamped to the corpus size.
        absolute_margin: drop a candidate unless ``score + absolute_margin <= positive score``.
        relative_margin: drop a candidate scoring above ``positive - |positive| * relative_margin``.
        max_score: drop candidates scoring above this (too close to be a negative).
        min_score: drop candidates scoring below this (too far to be useful).
        sampling_strategy: ``top`` (the hardest left) or ``random`` (uniformly among those left).
        seed: the random sampling's seed.
        fill_with_random: rows left with fewer than ``num_negatives`` negatives after filtering get
            random corpus documents (never a known positive of the anchor) in the free slots
            instead of being dropped (sentence-transformers drops them). A margin then keeps the
            anchors the model still ranks badly, the ones most worth training on.
    """

    num_negatives: int = 3
    range_min: int = 0
    range_max: int | None = None
    absolute_margin: float | None = None
    relative_margin: float | None = None
    max_score: float | None = None
    min_score: float | None = None
    sampling_strategy: Literal["top", "random"] = "top"
    seed: int = 42
    fill_with_random: bool = False

    @classmethod
    def from_config(cls, config: Any) -> MiningSettings:
        """The settings of a ``mine:`` config section (``MineConfig``: the same names)."""
        return cls(**{f.name: getattr(config, f.name) for f in fields(cls)})

    def validate(self, prefix: str = "") -> None:
        """Raise ``ValueError`` for impossible settings; ``prefix`` (``"mine."``) names config keys."""
        p = prefix
        if self.num_negatives < 1:
            raise ValueError(f"{p}num_negatives must be >= 1, got {self.num_negatives}")
        if self.range_min < 0:
            raise ValueError(f"{p}range_min must be >= 0, got {self.range_min}")
        if self.range_max is not None and self.num_negatives > self.range_max - self.range_min:
            raise ValueError(f"{p}range_min={self.range_min}..{p}range_max={self.range_max} leaves "
                             f"{self.range_max - self.range_min} candidates for {p}num_negatives={self.num_negatives}: "
                             f"raise {p}range_max or lower {p}num_negatives / {p}range_min")
        if self.sampling_strategy not in ("top", "random"):
            raise ValueError(f"{p}sampling_strategy must be 'top' or 'random', got {self.sampling_strategy!r}")

    @property
    def filters(self) -> bool:
        return any(v is not None for v in (self.absolute_margin, self.relative_margin, self.max_score, self.min_score))
