"""Input noise for denoising objectives (TSDAE): delete words at random, keep at least one."""

from __future__ import annotations

import random


def delete_words(text: str, ratio: float, rng: random.Random) -> str:
    """``text`` with each whitespace-separated word dropped with probability ``ratio``.

    At least one word survives (TSDAE's reference keeps one at random), so the encoder never sees
    an empty text.

    Example:
        >>> delete_words("the cat sat on the mat", 0.0, random.Random(0))
        'the cat sat on the mat'
        >>> len(delete_words("the cat sat on the mat", 1.0, random.Random(0)).split())
        1
    """
    if not 0.0 <= ratio < 1.0 + 1e-9:
        raise ValueError(f"deletion ratio must be in [0, 1], got {ratio}")
    words = text.split()
    if not words:
        return text
    kept = [word for word in words if rng.random() >= ratio]
    return " ".join(kept) if kept else rng.choice(words)
