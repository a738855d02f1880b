"""Translation of non-English captions into English before extraction.

Backends:
- `none`: every caption passes through as written (`text` = caption, `translated` False).
- `seq2seq`: a `transformers` sequence-to-sequence checkpoint (NLLB-200 or M2M100 style) that takes
  the source language as `tokenizer.src_lang` and the target language as the forced first token.
  Codes are FLORES-200 (`hin_Deva`, `spa_Latn`, ...); ISO 639-1 codes in the caption table are
  mapped through FLORES_CODES (extend it with `language_codes` in the config), and a FLORES-200 code
  in the table is used as it is.

English rows (the target language) are never sent to the model: their `text` is the caption,
byte for byte. Rows are translated grouped by language, in batches, longest first so that padding
is small. The output keeps the input's row order.
"""

from __future__ import annotations

import logging
import re

import pandas as pd

log = logging.getLogger(__name__)

TRANSLATED_COLUMNS = ["image_id", "language", "text", "translated"]
TARGET_FLORES = "eng_Latn"
FLORES_CODES = {
    "en": "eng_Latn", "hi": "hin_Deva", "es": "spa_Latn", "el": "ell_Grek", "ja": "jpn_Jpan",
    "fr": "fra_Latn", "de": "deu_Latn", "it": "ita_Latn", "pt": "por_Latn", "ru": "rus_Cyrl",
    "zh": "zho_Hans", "ar": "arb_Arab", "tr": "tur_Latn", "ko": "kor_Hang", "nl": "nld_Latn",
    "pl": "pol_Latn", "uk": "ukr_Cyrl", "vi": "vie_Latn", "id": "ind_Latn", "bn": "ben_Beng",
    "fa": "pes_Arab", "sw": "swh_Latn", "th": "tha_Thai", "he": "heb_Hebr", "sv": "swe_Latn",
}
_FLORES = re.compile(r"^[a-z]{3}_[A-Z][a-z]{3}$")


def flores_code(language: str, extra: dict | None = None) -> str:
    """The FLORES-200 code of an ISO 639-1 code or of a FLORES-200 code itself."""
    codes = FLORES_CODES | (extra or {})
    if language in codes:
        return codes[language]
    if _FLORES.match(language):
        return language
    raise ValueError(f"language {language!r}: no FLORES-200 code known; give it in "
                     f"captions.translation.language_codes (e.g. {{'{language}': 'xxx_Latn'}})")


def translate_captions(table: pd.DataFrame, backend: str = "none", model: str | None = None,
                       revision: str = "main", batch_size: int = 16, max_new_tokens: int = 128,
                       language_codes: dict | None = None, device: str = "cpu",
                       translator=None) -> pd.DataFrame:
    """English text for each caption (columns TRANSLATED_COLUMNS, input order).

    `translator` (a callable (texts, source_code) -> texts) replaces the model, for callers that
    hold one already.
    """
    codes = [flores_code(language, language_codes) for language in table["language"]]
    text = table["caption"].astype(str).tolist()
    translated = [False] * len(table)
    foreign = [i for i, code in enumerate(codes) if code != TARGET_FLORES]
    if backend == "none" or not foreign:
        if foreign:
            log.info("translation backend none: %d non-English captions stay as written", len(foreign))
    elif backend == "seq2seq":
        translator = translator or Seq2SeqTranslator(model, revision, device, max_new_tokens)
        for code in sorted({codes[i] for i in foreign}):
            rows = sorted((i for i in foreign if codes[i] == code), key=lambda i: -len(text[i]))
            for start in range(0, len(rows), batch_size):
                batch = rows[start:start + batch_size]
                outputs = translator([text[i] for i in batch], code)
                if len(outputs) != len(batch):
                    raise RuntimeError(f"translator returned {len(outputs)} texts for {len(batch)}")
                for i, output in zip(batch, outputs):
                    text[i], translated[i] = output, True
            log.info("translated %d captions from %s", len(rows), code)
    else:
        raise ValueError(f"unknown translation backend {backend!r}: use none or seq2seq")
    return pd.DataFrame({"image_id": table["image_id"].astype(str), "language": table["language"],
                         "text": text, "translated": translated})[TRANSLATED_COLUMNS]


class Seq2SeqTranslator:
    """A transformers seq2seq checkpoint (hub id or folder) translating into English."""

    def __init__(self, model: str, revision: str = "main", device: str = "cpu",
                 max_new_tokens: int = 128):
        if not model:
            raise ValueError("translation backend seq2seq needs captions.translation.model")
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model, revision=revision)
        self.model = AutoModelForSeq2SeqLM.from_pretrained(model, revision=revision).to(device).eval()
        self.device, self.max_new_tokens = device, max_new_tokens
        self.target_id = self.tokenizer.convert_tokens_to_ids(TARGET_FLORES)
        if self.target_id is None or self.target_id == self.tokenizer.unk_token_id:
            raise ValueError(f"{model}: the tokenizer has no language token {TARGET_FLORES}")

    def __call__(self, texts: list[str], source: str) -> list[str]:
        import torch

        if self.tokenizer.convert_tokens_to_ids(source) in (None, self.tokenizer.unk_token_id):
            raise ValueError(f"the translation tokenizer has no language token {source!r}")
        self.tokenizer.src_lang = source
        inputs = self.tokenizer(texts, return_tensors="pt", padding=True, truncation=True).to(self.device)
        with torch.inference_mode():
            generated = self.model.generate(**inputs, forced_bos_token_id=self.target_id,
                                            max_new_tokens=self.max_new_tokens, num_beams=1,
                                            do_sample=False)
        return self.tokenizer.batch_decode(generated, skip_special_tokens=True)
