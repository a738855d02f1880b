"""The caption geo-profiling stage in the shared demo run: every table present and consistent, and a
change to one step reruns only what follows it."""

import pandas as pd
import pytest

from conftest import clone_run, snakemake

pytestmark = pytest.mark.e2e

FOLDER = "results/demo_captions/captions"


def read(run, name):
    return pd.read_parquet(run / FOLDER / name)


def test_predictions_cover_every_caption_and_keep_namibia(demo_run):
    captions = pd.read_csv(demo_run / "resources/datasets/demo_captions/captions.csv",
                           keep_default_na=False, dtype=str)
    predictions = read(demo_run, "predictions.parquet")
    assert list(predictions.columns[:3]) == ["image_id", "entity", "country_pred"]
    assert set(predictions["image_id"]) == set(captions["id"])
    assert "NA" in set(predictions["country_true"]) and "NA" in set(predictions["country_pred"])
    english = predictions[predictions["language"] == "en"].drop_duplicates("image_id")
    assert (english["country_pred"] == english["country_true"]).mean() >= 0.9
    mentions = read(demo_run, "mentions.parquet")
    assert (mentions["backend"] == "gazetteer").all() and len(mentions) >= len(captions) - 5


def test_distributions_sum_to_the_captions_of_each_entity(demo_run):
    predictions = read(demo_run, "predictions.parquet")
    table = read(demo_run, "distributions.parquet")
    assert list(table.columns) == ["entity", "level", "place", "count", "share"]
    named = predictions[predictions["entity"] != ""]
    expected = named.groupby("entity").size().to_dict() | {"all": named["image_id"].nunique()}
    for (entity, level), group in table.groupby(["entity", "level"]):
        assert group["count"].sum() == expected[entity], (entity, level)
    assert "Africa" in set(table.loc[table["level"] == "continent", "place"])
    shown = read(demo_run, "distributions_shown.parquet")
    assert shown.groupby(["entity", "level"])["count"].sum().le(
        table.groupby(["entity", "level"])["count"].sum().reindex(
            shown.groupby(["entity", "level"]).size().index)).all()


def test_evaluation_presence_and_diversity_tables(demo_run):
    evaluation = read(demo_run, "evaluation.parquet")
    overall = evaluation[evaluation["scope"] == "overall"].iloc[0]
    assert overall["n"] == 48 and 0 <= overall["ci_low"] <= overall["accuracy"] <= overall["ci_high"]
    svm = read(demo_run, "tiny_clip/entity_svm.parquet")
    assert set(svm["entity"]) == {"house", "car", "church"} and svm["cv_accuracy"].between(0, 1).all()
    diversity = read(demo_run, "diversity.parquet")
    assert (diversity["n"] >= 2).all()
    assert (diversity["vendi_caption"].between(1, diversity["n"] + 1e-9)).all()
    for step in ("table", "translate", "extract", "retrieve", "predict", "distributions", "evaluation"):
        assert (demo_run / f"logs/captions/demo_captions/{step}.log").is_file()


def test_changing_the_prediction_settings_reruns_only_what_follows(demo_run, tmp_path):
    run = clone_run(demo_run, tmp_path / "run")
    config = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(config.replace("  presence: {folds: 3}",
                                                    "  prediction: {min_similarity: 0.9}\n  presence: {folds: 3}"))
    result = snakemake(run, "--cores", "2", "--dry-run", "--quiet", "rules")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "caption_predict" in out and "caption_distributions" in out
    for upstream in ("caption_extract", "caption_retrieve", "place_name_index", "caption_translate",
                     "caption_embeddings"):
        assert upstream not in out, upstream
