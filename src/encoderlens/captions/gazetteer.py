"""Offline place extraction: n-gram matching of caption words against the place-name table.

- Text and names are compared in a normal form: accents stripped (NFKD), case folded, every run of
  non-word characters one space ("Sainte-Anne", "SAINTE ANNE" and "Sainte Anne" are one key).
- A caption is cut into words (`\\w+`); a mention is a run of 1..max_words consecutive words whose
  normal form is a name. Matching whole words means a name never matches inside another word
  ("Nice" is not found in "Venice"). A run does not cross punctuation other than a hyphen, an
  apostrophe or a full stop inside a name ("Knysna, South Africa" is two mentions, not one).
- Leftmost-longest: at each word the longest matching run wins and matching resumes after it, so
  "Isle of Man" is one mention, not "Isle of Man" and "Man".
- Noise control: a mention must start with a capital letter when the script has case
  (`require_capital`), names shorter than `min_length` characters and names that are stop words
  (English function words, caption words such as "photo", the entity words) are not matched.
- Ambiguity is not resolved here: "Douglas" is one mention; retrieval lists the places so named
  and prediction chooses among them.
"""

from __future__ import annotations

import re
import unicodedata

import pandas as pd

MENTION_COLUMNS = ["image_id", "mention", "start", "end", "backend"]
_WORD = re.compile(r"\w+")
_NON_WORD = re.compile(r"[\W_]+")
_JOINER = re.compile(r"\s*[-'’.]?\s*")  # what may separate two words inside one name
CAPTION_WORDS = {"photo", "photograph", "picture", "image", "view", "scene", "near", "street", "road"}


def normal_form(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _NON_WORD.sub(" ", stripped.casefold()).strip()


def default_stopwords() -> set[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return set(ENGLISH_STOP_WORDS) | CAPTION_WORDS


class Gazetteer:
    def __init__(self, names, min_length: int = 3, stopwords=None, require_capital: bool = True,
                 max_words: int = 6):
        stop = {normal_form(w) for w in (default_stopwords() if stopwords is None else stopwords)}
        self.require_capital = require_capital
        self.keys: set[str] = set()
        self.longest: dict[str, int] = {}  # first word -> most words of a name starting with it
        for name in names:
            key = normal_form(str(name))
            if len(key.replace(" ", "")) < min_length or key in stop:
                continue
            words = key.split(" ")
            if len(words) > max_words:
                continue
            self.keys.add(key)
            self.longest[words[0]] = max(self.longest.get(words[0], 0), len(words))

    def find(self, text: str) -> list[tuple[str, int, int]]:
        """(mention as written, start, end) of each place name in `text`, in order."""
        words = [(m.start(), m.end(), normal_form(m.group())) for m in _WORD.finditer(text)]
        found, i = [], 0
        while i < len(words):
            start, _, first = words[i]
            longest = self.longest.get(first, 0)
            match = None
            if longest and (not self.require_capital or _capitalised(text[start])):
                key = first
                for j in range(i, min(i + longest, len(words))):
                    if j > i:
                        gap = text[words[j - 1][1]:words[j][0]]
                        if not _JOINER.fullmatch(gap):
                            break
                        key = f"{key} {words[j][2]}"
                    if key in self.keys:
                        match = j
            if match is None:
                i += 1
                continue
            end = words[match][1]
            found.append((text[start:end], start, end))
            i = match + 1
        return found


def _capitalised(ch: str) -> bool:
    return ch.isupper() or ch.lower() == ch.upper()  # scripts without case pass


def extract_mentions(ids, texts, gazetteer: Gazetteer) -> pd.DataFrame:
    rows = [(image_id, mention, start, end, "gazetteer")
            for image_id, text in zip(ids, texts)
            for mention, start, end in gazetteer.find(str(text))]
    return pd.DataFrame(rows, columns=MENTION_COLUMNS).astype({"start": "int64", "end": "int64"})
