"""How alike two answers are: exact match, token-level F1, and a similarity ratio.

Exact match and token F1 are the SQuAD metrics (Rajpurkar et al., 2016, and the official
evaluation script): both compare *normalized* text, lower-cased, without punctuation,
without the articles a/an/the, with runs of white space made one. F1 is the harmonic mean
of precision and recall over the two answers' tokens, counted as multisets.

``similarity`` is the Ratcliff/Obershelp ratio of Python's ``difflib.SequenceMatcher``
on the normalized texts: twice the number of matching characters over the total number of
characters, from 0 (nothing in common) to 1 (equal). Unlike F1 it sees word order and
near-miss spellings.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from difflib import SequenceMatcher

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize(text: str) -> str:
    text = text.lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(reference: str, candidate: str) -> float:
    return 1.0 if normalize(reference) == normalize(candidate) else 0.0


def token_f1(reference: str, candidate: str) -> float:
    ref, cand = normalize(reference).split(), normalize(candidate).split()
    if not ref or not cand:
        return 1.0 if ref == cand else 0.0
    common = sum((Counter(ref) & Counter(cand)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(cand), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def similarity(reference: str, candidate: str) -> float:
    return SequenceMatcher(None, normalize(reference), normalize(candidate), autojunk=False).ratio()


__all__ = ["exact_match", "normalize", "similarity", "token_f1"]
