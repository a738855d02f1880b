"""One function per workflow step: paths and settings in, tables written (atomically) out.

The workflow scripts only unpack `snakemake` and call these; tests call them directly.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from encoderlens.tables import write_table

log = logging.getLogger(__name__)
STATUS_COLUMNS = ["image_id", "status", "raw_reply"]


def _sentence_encoder(settings: dict):
    from .sentence import SentenceEncoder

    return SentenceEncoder(settings["encoder"], settings.get("device", "cpu"),
                           settings.get("batch_size", 256), settings.get("threads"))


def _chat_client(settings: dict, cache_dir):
    from .llm import ChatClient

    return ChatClient(settings["base_url"], settings["model"], settings.get("api_key_env"),
                      cache_dir=cache_dir, timeout=settings.get("timeout", 60),
                      max_retries=settings.get("max_retries", 5), backoff=settings.get("backoff", 1.0))


def caption_table_job(folder, output, default_language: str = "en") -> None:
    from .table import read_caption_table

    table = read_caption_table(folder, default_language)
    log.info("%d captions from %s", len(table), folder)
    write_table(table, output)


def translate_job(captions, output, settings: dict) -> None:
    from .translate import translate_captions

    table = pd.read_parquet(captions)
    translated = translate_captions(
        table, settings["backend"], settings.get("model"), settings.get("revision", "main"),
        settings.get("batch_size", 16), settings.get("max_new_tokens", 128),
        settings.get("language_codes"), settings.get("device", "cpu"))
    write_table(translated, output)


def name_index_job(places, folder, settings: dict) -> dict:
    from .names import place_names
    from .retrieval import build_name_index

    names = place_names(pd.read_parquet(places), settings["min_population"],
                        settings["alternate_names"], settings.get("countries"))
    return build_name_index(names, _sentence_encoder(settings), folder,
                            meta={key: settings[key] for key in ("encoder", "min_population",
                                                                 "alternate_names", "countries")},
                            cached_neighbours=settings["cached_neighbours"], threads=settings.get("threads"))


def gazetteer_from_places(places: pd.DataFrame, settings: dict):
    from .gazetteer import Gazetteer, default_stopwords
    from .names import place_names

    names = place_names(places, settings["min_population"], settings["alternate_names"])
    return Gazetteer(names["name"], min_length=settings["min_name_length"],
                     stopwords=default_stopwords() | set(settings.get("stopwords", []))
                     | set(settings.get("entities", [])),
                     require_capital=settings["require_capital"])


def extract_job(translated, places, mentions_out, status_out, settings: dict, llm: dict,
                cache_dir=None) -> None:
    from .gazetteer import MENTION_COLUMNS, extract_mentions

    table = pd.read_parquet(translated)
    started = time.perf_counter()
    if settings["backend"] == "gazetteer":
        gazetteer = gazetteer_from_places(pd.read_parquet(places), settings)
        mentions = extract_mentions(table["image_id"], table["text"], gazetteer)
        status = pd.DataFrame({"image_id": table["image_id"], "status": "ok", "raw_reply": ""})
    elif settings["backend"] == "llm":
        from .llm import llm_extract

        rows, statuses = llm_extract(_chat_client(llm, cache_dir), table["image_id"], table["text"],
                                     llm.get("batch_size", 20))
        mentions = pd.DataFrame(rows, columns=MENTION_COLUMNS).astype({"start": "int64", "end": "int64"})
        status = pd.DataFrame(statuses, columns=STATUS_COLUMNS)
    else:
        raise ValueError(f"unknown extraction backend {settings['backend']!r}")
    log.info("%d mentions in %d captions (%.1f s)", len(mentions), len(table),
             time.perf_counter() - started)
    write_table(mentions, mentions_out)
    write_table(status, status_out)


def retrieve_job(mentions, index_folder, output, k: int, encoder: dict,
                 orthographic: bool = True) -> None:
    from .retrieval import LazyEncoder, NameIndex, retrieve_candidates

    index = NameIndex(index_folder)
    encode = LazyEncoder(lambda: _sentence_encoder(encoder))
    candidates = retrieve_candidates(pd.read_parquet(mentions), index, encode, k,
                                     threads=encoder.get("threads"), orthographic=orthographic)
    write_table(candidates, output)


def predict_job(captions, translated, mentions, candidates, predictions_out, status_out,
                settings: dict, entities, continent_scheme: str, llm: dict, cache_dir=None) -> None:
    from .predict import assemble_predictions, predict_from_candidates

    captions, translated = pd.read_parquet(captions), pd.read_parquet(translated)
    mentions, candidates = pd.read_parquet(mentions), pd.read_parquet(candidates)
    if settings["backend"] == "candidates":
        predicted = predict_from_candidates(candidates, captions["image_id"],
                                            min_similarity=settings["min_similarity"],
                                            margin=settings["margin"],
                                            population_exponent=settings["population_exponent"])
        status = pd.DataFrame({"image_id": captions["image_id"], "status": "ok", "raw_reply": ""})
    elif settings["backend"] == "llm":
        from .llm import llm_predict

        predicted, statuses = llm_predict(_chat_client(llm, cache_dir), translated["image_id"],
                                          translated["text"], candidates, llm.get("batch_size", 20),
                                          settings["llm_candidates"])
        status = pd.DataFrame(statuses, columns=STATUS_COLUMNS)
    else:
        raise ValueError(f"unknown prediction backend {settings['backend']!r}")
    table = assemble_predictions(captions, translated, mentions, predicted, entities,
                                 settings["backend"], continent_scheme)
    write_table(table, predictions_out)
    write_table(status, status_out)


def distributions_job(predictions, output, correlations_out, continent_scheme: str,
                      covariates: dict | None = None, presence=None) -> None:
    from .profile import covariate_correlations, distributions, restrict_to_shown

    table = pd.read_parquet(predictions)
    if presence is not None:
        table = restrict_to_shown(table, pd.read_parquet(presence))
    result = distributions(table, continent_scheme)
    write_table(result, output)
    if correlations_out is not None:
        correlations = pd.DataFrame(columns=["entity", "covariate", "n_countries", "rho", "p_value"])
        if covariates and covariates.get("path"):
            path = Path(covariates["path"])
            frame = (pd.read_parquet(path) if path.suffix == ".parquet"
                     else pd.read_csv(path, keep_default_na=False, na_values=[""]))
            country = covariates.get("country_column", "country")
            if country not in frame.columns:
                raise ValueError(f"{path}: no country column {country!r} (found {list(frame.columns)})")
            frame[country] = frame[country].astype(str)
            correlations = covariate_correlations(result, frame, country)
        write_table(correlations, correlations_out)


def evaluation_job(predictions, evaluation_out, confusion_out, top: int) -> None:
    from .profile import evaluation

    table, confusion = evaluation(pd.read_parquet(predictions), top)
    write_table(table, evaluation_out)
    write_table(confusion, confusion_out)


def caption_embeddings_job(translated, output, encoder: dict) -> None:
    table = pd.read_parquet(translated)
    vectors = _sentence_encoder(encoder)(table["text"].tolist())
    write_vectors(output, table["image_id"].tolist(), vectors)


def write_vectors(path, ids, vectors) -> None:
    import os
    import uuid

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with h5py.File(tmp, "w") as handle:
            handle.create_dataset("ids", data=np.array(ids, dtype=object), dtype=h5py.string_dtype())
            handle.create_dataset("vectors", data=np.asarray(vectors, dtype=np.float32))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def read_vectors(path, dataset: str = "vectors") -> tuple[list[str], np.ndarray]:
    with h5py.File(path, "r") as handle:
        if dataset not in handle:
            raise ValueError(f"{path}: no /{dataset} (found {sorted(handle)})")
        ids = [i.decode() if isinstance(i, bytes) else str(i) for i in handle["ids"][()]]
        return ids, handle[dataset][()]


def presence_job(predictions, embeddings, presence_out, svm_out, model: str, entities,
                 settings: dict) -> None:
    from .presence import entity_presence

    ids, features = read_vectors(embeddings, settings["feature"])
    presence, summary = entity_presence(pd.read_parquet(predictions), ids, features, entities, model,
                                        settings["folds"], settings["C"], settings["seed"])
    write_table(presence, presence_out)
    write_table(summary, svm_out)


def diversity_job(predictions, caption_embeddings, image_embeddings, output, feature: str,
                  min_items: int) -> None:
    from .diversity import diversity_table

    image_ids, image_vectors = read_vectors(image_embeddings, feature)
    caption_ids, caption_vectors = read_vectors(caption_embeddings)
    table = diversity_table(pd.read_parquet(predictions), dict(zip(image_ids, image_vectors)),
                            dict(zip(caption_ids, caption_vectors)), min_items)
    write_table(table, output)
