"""The caption table the profiling stage works on, and the entity filter.

Columns of `captions.parquet`: image_id, caption, language, country_true, subset, image. Every
column is text; "" where the source left it empty; "NA" stays Namibia. An empty `language` means
the configured default (English unless told otherwise).

Entity filter: a caption mentions an entity when the entity word, or its simple plural (+s, +es, and
y -> ies), occurs as a whole word, case-insensitively ("cars" and "Car" match "car"; "carpet" and
"scar" do not).
"""

from __future__ import annotations

import re

import pandas as pd

from encoderlens.data.captions import caption_table_path, read_caption_file

TABLE_COLUMNS = ["image_id", "caption", "language", "country_true", "subset", "image"]


def read_caption_table(root, default_language: str = "en") -> pd.DataFrame:
    """The captions of a dataset folder (captions.csv or captions.parquet) in TABLE_COLUMNS.

    Duplicate or empty ids raise ValueError naming the file and line: a caption table is small
    enough to fix, and silently dropping a row would change the distributions.
    """
    path = caption_table_path(root)
    table = read_caption_file(path)
    bad = table["id"].eq("") | table["id"].duplicated()
    if bad.any():
        line = int(bad.to_numpy().nonzero()[0][0]) + 2  # line 1 is the header
        reason = "empty id" if table["id"].iloc[line - 2] == "" else "duplicate id"
        raise ValueError(f"{path}: line {line}: {reason} {table['id'].iloc[line - 2]!r}")
    return pd.DataFrame({
        "image_id": table["id"],
        "caption": table["caption"],
        "language": table["language"].str.strip().replace("", default_language),
        "country_true": table["country"].str.strip().str.upper(),
        "subset": table["subset"],
        "image": table["image"],
    })[TABLE_COLUMNS].astype(str)


def entity_pattern(entity: str) -> re.Pattern:
    """Whole-word, case-insensitive match of an entity or its simple plural."""
    word = entity.strip()
    if not word:
        raise ValueError("an entity must be a non-empty word")
    forms = {word, word + "s", word + "es"}
    if word.endswith("y") and len(word) > 1:
        forms.add(word[:-1] + "ies")
    alternatives = "|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True))
    # \w-boundaries rather than \b so that a hyphen or digit next to the word still separates it
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


def entity_mentions(texts, entities) -> pd.DataFrame:
    """Boolean table (one row per text, one column per entity): does the text mention it?"""
    texts = pd.Series(list(texts), dtype=object).fillna("").astype(str)
    return pd.DataFrame({entity: texts.str.contains(entity_pattern(entity)).to_numpy()
                         for entity in entities})
