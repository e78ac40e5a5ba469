"""Input perturbations for robustness evaluation: noisy item text and thinned histories.

Every function takes a ``severity`` in [0, 1] (the share of words, characters or items touched) and a ``seed``; the
random stream of each text is derived from (seed, perturbation, text index), so a result does not depend on the
order or the number of texts perturbed alongside it. Severity 0 returns the input unchanged.
"""

from __future__ import annotations

import math
import random
import string
from collections.abc import Callable, Sequence

from recpipe.errors import InvalidInputError

# characters a typo may introduce: lower-case letters, as a keyboard slip would
_LETTERS = string.ascii_lowercase


def _rng(seed: int, name: str, index: int) -> random.Random:
    return random.Random(f"{seed}:{name}:{index}")


def _typo(word: str, rng: random.Random) -> str:
    """One character edit: swap two neighbours, drop one, insert one or replace one."""
    if len(word) < 2:
        return word
    i = rng.randrange(len(word) - 1)
    kind = rng.randrange(4)
    if kind == 0:
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if kind == 1:
        return word[:i] + word[i + 1 :]
    if kind == 2:
        return word[:i] + rng.choice(_LETTERS) + word[i:]
    return word[:i] + rng.choice(_LETTERS.replace(word[i].lower(), "")) + word[i + 1 :]


def char_typos(text: str, severity: float, rng: random.Random) -> str:
    """Each word of two or more characters gets one typo with probability ``severity``."""
    return " ".join(_typo(w, rng) if rng.random() < severity else w for w in text.split())


def word_dropout(text: str, severity: float, rng: random.Random) -> str:
    """Each word is dropped with probability ``severity`` (one word always stays)."""
    words = text.split()
    kept = [w for w in words if rng.random() >= severity]
    return " ".join(kept or words[:1])


def word_swap(text: str, severity: float, rng: random.Random) -> str:
    """Each neighbouring pair of words is swapped with probability ``severity`` (a word moves at most once)."""
    words = text.split()
    i = 0
    while i < len(words) - 1:
        if rng.random() < severity:
            words[i], words[i + 1] = words[i + 1], words[i]
            i += 2
        else:
            i += 1
    return " ".join(words)


def casing(text: str, severity: float, rng: random.Random) -> str:
    """Each word's case is changed (upper, lower, title or swapped) with probability ``severity``. An uncased
    tokenizer is immune by construction: the result then measures nothing but that."""
    styles = (str.upper, str.lower, str.title, str.swapcase)
    return " ".join(rng.choice(styles)(w) if rng.random() < severity else w for w in text.split())


def truncation(text: str, severity: float, rng: random.Random) -> str:
    """Keep the first ``ceil((1 - severity) · n)`` words (at least one): metadata cut short."""
    words = text.split()
    return " ".join(words[: max(1, math.ceil((1 - severity) * len(words)))])


TEXT_PERTURBATIONS: dict[str, Callable[[str, float, random.Random], str]] = {
    "char_typos": char_typos,
    "word_dropout": word_dropout,
    "word_swap": word_swap,
    "casing": casing,
    "truncation": truncation,
}


def perturb_texts(texts: Sequence[str], name: str, severity: float, seed: int) -> list[str]:
    """``TEXT_PERTURBATIONS[name]`` applied to every text, deterministically given ``seed``."""
    if name not in TEXT_PERTURBATIONS:
        raise InvalidInputError(f"unknown text perturbation {name!r}; choose from {sorted(TEXT_PERTURBATIONS)}")
    if not 0 <= severity <= 1:
        raise InvalidInputError(f"severity must lie in [0, 1], got {severity}")
    if severity == 0:
        return list(texts)
    fn = TEXT_PERTURBATIONS[name]
    return [fn(text, severity, _rng(seed, name, i)) for i, text in enumerate(texts)]


def drop_history(histories: Sequence[Sequence[int]], severity: float, seed: int) -> list[list[int]]:
    """Each history item is dropped with probability ``severity``; the most recent item always stays."""
    if not 0 <= severity <= 1:
        raise InvalidInputError(f"severity must lie in [0, 1], got {severity}")
    out = []
    for i, history in enumerate(histories):
        rng = _rng(seed, "drop_history", i)
        kept = [item for item in history[:-1] if rng.random() >= severity]
        out.append(kept + list(history[-1:]))
    return out
