"""The headline tables of every study, as tidy CSV copies, and the run's summary (Markdown and HTML).

Each study publishes a few headline tables, made by a function of this module's registry `STUDIES`
from the study's own outputs: rows are selected and columns renamed, numbers are never recomputed,
so a value in a headline table, the CSV copy or the summary is the value in the parquet file (or
JSON) it names in its `source` column. Every table carries `dataset`, `model` and `variant` columns
(empty where a study has none, e.g. the caption study), units in its column names (`threshold_pct`,
`median_km`) and one spelling of the OSV-5M level (`sub_region`).

In these tables `layer` -1 means "no layer" (a whole-model map: rollout, Grad-CAM, the MAP-head
probe, the baselines) and `head` -1 means the mean over heads; in the config, a layer -1 means the
last layer. Every table's note says so where the columns appear.

To add a study: write a function `(inputs, settings) -> {name: Table}` and register it in `STUDIES`
with the names of its tables; the workflow's rule lists the same names as its outputs.
"""

from __future__ import annotations

import html
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from ..geo.depth import shown_failures
from .figures_alignment import leaderboard_table

IDENTITY = ["dataset", "model", "variant"]
LAYER_HEAD_NOTE = ("layer -1: no layer (a whole-model map: rollout, Grad-CAM, MAP probe, baselines); "
                   "head -1: the mean over heads")
# columns of a statistics table that flag a row with fewer samples than the configured minimum (added by
# the statistics stage where it flags them): carried into the headline tables and the summary as they are
FLAG_PATTERN = re.compile(r"(below|under)_min|small_n|low_n|min_n_flag|few_samples", re.IGNORECASE)
RENAMES = {"threshold": "threshold_pct", "sub-region": "sub_region"}
SUMMARY_ROWS = 15  # rows of a headline table shown in the summary; the CSV copy holds them all


@dataclass
class Table:
    """A headline table: its rows (tidy), what it is, how to read it, and where it came from."""

    title: str
    frame: pd.DataFrame
    note: str
    sources: list[str] = field(default_factory=list)
    figure: str | None = None
    summary_columns: list[str] | None = None  # the columns shown in the summary (all when None)
    summary_order: str | None = None           # sort key for the summary's first SUMMARY_ROWS rows


# ---- helpers --------------------------------------------------------------------------------------
def tidy(frame: pd.DataFrame, dataset: str, model=None, variant=None, source: str | None = None) -> pd.DataFrame:
    """`dataset`, `model`, `variant` first (filled when given), renamed columns and level values."""
    table = frame.copy()
    table = table.rename(columns={c: _renamed(c) for c in table.columns})
    if "level" in table.columns:
        table["level"] = table["level"].astype(str).map(lambda v: RENAMES.get(v, v))
    table["dataset"] = dataset
    for column, value in (("model", model), ("variant", variant)):
        if value is not None:
            table[column] = value
        elif column not in table.columns:
            table[column] = ""
    if source is not None:
        table["source"] = source
    order = IDENTITY + [c for c in table.columns if c not in IDENTITY]
    return table[order].reset_index(drop=True)


def _renamed(column: str) -> str:
    column = str(column)
    if column in RENAMES:
        return RENAMES[column]
    return column.replace("sub-region", "sub_region")


def _concat(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if len(f.columns)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=IDENTITY)


def _flags(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if FLAG_PATTERN.search(str(c))]


def _at_threshold(frame: pd.DataFrame, threshold: float, column: str = "threshold") -> pd.DataFrame:
    values = frame[column].astype(float)
    return frame[np.isclose(values, threshold) | values.isna()]


def _read_json(path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _model_of(path, depth: int) -> str:
    """The path component `depth` folders above the file (results/{dataset}/{model}/...)."""
    return Path(path).parents[depth].name


# ---- the alignment study ----------------------------------------------------------------------------
_SCOPE_NOTE = ("each model through its primary map (the first of the method preference it has), at the "
               "reference threshold and the figures' layer rule, threshold-free metrics as they are")


def _headline_comparisons(frame: pd.DataFrame, threshold: float, layer_rule: str) -> pd.DataFrame:
    """The comparisons the figures show: primary scope, the figures' layer rule, the reference threshold
    (and the metrics that have none)."""
    if "scope" in frame.columns and (frame["scope"] == "primary").any():
        frame = frame[frame["scope"] == "primary"]
    if "layer_choice" in frame.columns and (frame["layer_choice"] == layer_rule).any():
        frame = frame[frame["layer_choice"] == layer_rule]
    return _at_threshold(frame, threshold) if len(frame) else frame


def alignment_tables(inputs: Mapping, settings: Mapping) -> dict[str, Table]:
    dataset, threshold = settings["dataset"], float(settings["threshold"])
    layer_rule, alpha = settings.get("layer_rule", "last"), float(settings["alpha"])
    summary_path = str(inputs["summary"])
    summary = pd.read_parquet(summary_path)
    board = leaderboard_table(summary, threshold, layer_rule)
    if not board.empty:
        board.insert(board.columns.get_loc("layer") + 1, "head", -1)
        board.insert(board.columns.get_loc("head") + 1, "threshold", threshold)
    tables = {"leaderboard": Table(
        "Leaderboard", tidy(board, dataset, source=summary_path),
        f"One row per model, variant and method at its {layer_rule} stored layer, heads averaged, IoU at "
        f"{threshold:g}% of the attention mass; means over images with 95% percentile-bootstrap CIs, "
        f"best mean IoU first; model 'baseline': random, centred Gaussian and Sobel maps. {LAYER_HEAD_NOTE}.",
        [summary_path], f"results/figures/{dataset}/leaderboard.png",
        ["rank", "model", "variant", "method", "layer", "iou_mean", "iou_ci_low", "iou_ci_high", "iou_n",
         "pointing_hit_mean"])}

    models_path = str(inputs["models"])
    models = _headline_comparisons(pd.read_parquet(models_path), threshold, layer_rule)
    survived = models[models["reject_ttest"].astype(bool)].rename(columns={
        "model_a": "model", "method_a": "method", "layer_a": "layer", "model_b": "versus_model",
        "method_b": "versus_method", "layer_b": "versus_layer"})
    tables["model_comparisons"] = Table(
        "Model comparisons that survive Holm's correction",
        tidy(survived, dataset, source=models_path),
        f"Paired tests on the same images (paired t; Wilcoxon signed-rank beside it), Holm-corrected "
        f"within each family, kept where the paired t test rejects at alpha = {alpha:g}; {_SCOPE_NOTE} "
        f"({threshold:g}% mass, {layer_rule} layer; the other scopes and thresholds are in the parquet "
        f"file): mean_diff = "
        f"mean_a − mean_b (model minus versus_model) with its bootstrap 95% CI, Cohen's d_z the effect "
        f"size. Variant is the variant both sides share. {LAYER_HEAD_NOTE}.",
        [models_path], f"results/figures/{dataset}/leaderboard.png",
        ["kind", "model", "variant", "method", "layer", "versus_model", "versus_method", "metric", "threshold_pct",
         "n_pairs", "mean_diff", "diff_ci_low", "diff_ci_high", "cohens_dz", "p_ttest_holm"],
        "cohens_dz")

    variants_path = str(inputs["variants"])
    variants = _headline_comparisons(pd.read_parquet(variants_path), threshold, layer_rule)
    survived = variants[variants["reject_ttest"].astype(bool)]
    tables["variant_comparisons"] = Table(
        "Fine-tuned variants against frozen that survive Holm's correction",
        tidy(survived, dataset, source=variants_path),
        f"Each fine-tuned variant against the frozen model on the same map and images: mean_diff = tuned − "
        f"frozen (ΔIoU for metric iou) with its bootstrap 95% CI and Cohen's d_z; Holm-corrected within "
        f"each family, kept where the paired t test rejects at alpha = {alpha:g}; {_SCOPE_NOTE} "
        f"({threshold:g}% mass, {layer_rule} layer). {LAYER_HEAD_NOTE}.",
        [variants_path], f"results/figures/{dataset}/delta_iou.png",
        ["model", "variant", "method", "layer", "metric", "threshold_pct", "n_pairs", "mean_diff",
         "diff_ci_low", "diff_ci_high", "cohens_dz", "p_ttest_holm"], "cohens_dz")

    specialisation_path = str(inputs["specialisation"])
    heads = pd.read_parquet(specialisation_path)
    heads = _at_threshold(heads, threshold) if len(heads) else heads
    top = (heads.sort_values(["specialisation", "layer", "head"], ascending=[False, False, True], kind="stable")
           .groupby(["model", "variant", "method"], sort=True, dropna=False).head(1)
           if len(heads) else heads)
    tables["head_specialisation"] = Table(
        "Most specialised head per model",
        tidy(top.sort_values(["model", "variant", "method"]), dataset, source=specialisation_path),
        f"Per model, variant and method the head whose IoU, relative to the model's average head, is most "
        f"concentrated on one building-part type (specialisation 1 − H(p)/log F; 1: one type only) at "
        f"{threshold:g}% mass; preferred_feature: that type, max_share: its share.",
        [specialisation_path], f"results/figures/{dataset}/head_feature_frozen.png",
        ["model", "variant", "method", "layer", "head", "n_features", "specialisation", "max_share",
         "preferred_feature"])
    return tables


# ---- fine-tuning and the style probe ----------------------------------------------------------------
def finetune_tables(inputs: Mapping, settings: Mapping) -> dict[str, Table]:
    dataset, threshold = settings["dataset"], float(settings["threshold"])
    layer_rule = settings.get("layer_rule", "last")
    rows = []
    for path in inputs.get("metrics", []):
        metrics = _read_json(path)
        variant, model = Path(path).parent.name, _model_of(path, 2)
        rows.append({"model": model, "variant": variant, **{
            key: metrics.get(key) for key in ("heldout_accuracy", "heldout_majority_accuracy",
                                              "chance_accuracy", "val_accuracy", "best_epoch")},
            "source": str(path)})
    held = pd.DataFrame(rows, columns=["model", "variant", "heldout_accuracy", "heldout_majority_accuracy",
                                       "chance_accuracy", "val_accuracy", "best_epoch", "source"])
    sources = [str(p) for p in inputs.get("metrics", [])]
    if inputs.get("variants"):
        variants_path = str(inputs["variants"])
        variants = pd.read_parquet(variants_path)
        delta = variants[(variants["metric"] == "iou") & (variants["layer_choice"] == layer_rule)]
        if "scope" in delta.columns and (delta["scope"] == "primary").any():
            delta = delta[delta["scope"] == "primary"]
        delta = _at_threshold(delta, threshold)
        delta = delta[["model", "variant", "method", "layer", "threshold", "n_pairs", "mean_diff",
                       "diff_ci_low", "diff_ci_high", "cohens_dz", "p_ttest_holm", "reject_ttest",
                       *_flags(delta)]].rename(columns={
            "mean_diff": "delta_iou", "diff_ci_low": "delta_iou_ci_low", "diff_ci_high": "delta_iou_ci_high",
            "reject_ttest": "holm_significant"})
        held = held.merge(delta, on=["model", "variant"], how="left")
        sources.append(variants_path)
    return {"finetune": Table(
        "Fine-tuning: held-out style accuracy and ΔIoU",
        tidy(held, dataset),
        f"Per model and strategy: style accuracy on the held-out annotated images (beside the majority "
        f"class and chance) and the change in IoU with the expert boxes on the same images, ΔIoU = tuned − "
        f"frozen, at {threshold:g}% mass, {layer_rule} layer, heads averaged, with its bootstrap 95% CI "
        f"and Holm-corrected paired t p-value (statistics stage). {LAYER_HEAD_NOTE}.",
        sources, f"results/figures/{dataset}/delta_iou.png",
        ["model", "variant", "heldout_accuracy", "heldout_majority_accuracy", "method", "layer", "n_pairs",
         "delta_iou", "delta_iou_ci_low", "delta_iou_ci_high", "p_ttest_holm"])}


def style_probe_tables(inputs: Mapping, settings: Mapping) -> dict[str, Table]:
    dataset = settings["dataset"]
    frames = [tidy(pd.read_parquet(p), dataset, variant="frozen", source=str(p)) for p in inputs["probes"]]
    return {"style_probe": Table(
        "Style probe on the frozen embeddings",
        _concat(frames),
        "Cross-validated logistic-regression probe of the architectural style on each model's frozen "
        "embeddings (folds stratified by style, grouped by church): mean fold accuracy, pooled "
        "out-of-fold accuracy, balanced accuracy, beside chance and the majority class.",
        [str(p) for p in inputs["probes"]], None,
        ["model", "feature", "n_images", "accuracy_mean", "accuracy_std", "balanced_accuracy",
         "majority_accuracy", "chance_accuracy"])}


# ---- street views: probes, kNN geolocation, distance calibration -----------------------------------
def geo_tables(inputs: Mapping, settings: Mapping) -> dict[str, Table]:
    dataset = settings["dataset"]
    probes = []
    for path in inputs["probes"]:
        table = pd.read_parquet(path)
        probes.append(tidy(table, dataset, model=_model_of(path, 0), variant="frozen", source=str(path)))
    knn = []
    for path in inputs["knn"]:
        table = pd.read_parquet(path)
        knn.append(tidy(table, dataset, model=_model_of(path, 1), variant=Path(path).parent.name,
                        source=str(path)))
    return {
        "probes": Table(
            "Linear probes per level against the majority class",
            _concat(probes),
            "Top-1 accuracy of a linear probe on the frozen embeddings per admin level (OSV-5M's "
            "hierarchical keys) and embedding, beside the majority-class accuracy on the same test "
            "split; levels with too few samples per class are marked not probeable.",
            [str(p) for p in inputs["probes"]], f"results/figures/{dataset}/probe_accuracy.png",
            ["model", "level", "features", "n_classes", "n_test", "top1", "majority_top1", "top5", "probeable"]),
        "knn": Table(
            "kNN geolocation: GeoScore and distance",
            _concat(knn),
            "kNN geolocation of the held-out queries from the gallery, per model, variant, embedding and "
            "method: mean GeoScore (5000·exp(−d/1492.7 km), 0–5000 points), median and mean error in km, "
            "share within each radius (acc_{r}km) and per admin level.",
            [str(p) for p in inputs["knn"]], f"results/figures/{dataset}/geoscore.png",
            ["model", "variant", "features", "method", "n", "geoscore", "median_km", "mean_km"]),
    }


def calibration_tables(inputs: Mapping, settings: Mapping) -> dict[str, Table]:
    dataset = settings["dataset"]
    frames = [tidy(pd.read_parquet(p), dataset, model=_model_of(p, 0), variant=settings.get("variant", "distcal"),
                   source=str(p)) for p in inputs["calibration"]]
    return {"calibration": Table(
        "Distance calibration: before and after",
        _concat(frames),
        "The distance-calibrated LoRA variant against the frozen model, one row per metric: kNN GeoScore "
        "and median km (top-1), Pearson and Spearman correlation of cosine with distance, and the "
        "embeddings' spread; collapse: the effective rank or spread fell below half of frozen.",
        [str(p) for p in inputs["calibration"]], None,
        ["model", "variant", "features", "metric", "frozen", "calibrated", "change", "collapse"])}


# ---- captions -------------------------------------------------------------------------------------------
def caption_tables(inputs: Mapping, settings: Mapping) -> dict[str, Table]:
    dataset = settings["dataset"]
    evaluation_path, distributions_path = str(inputs["evaluation"]), str(inputs["distributions"])
    evaluation = pd.read_parquet(evaluation_path)
    distributions = pd.read_parquet(distributions_path)
    unknown = distributions[(distributions["level"] == "country") & (distributions["place"] == "Unknown")]
    unknown = unknown[["entity", "count", "share"]].rename(columns={"count": "n_unknown", "share": "unknown_share"})
    totals = (distributions[distributions["level"] == "country"].groupby("entity", sort=True)["count"].sum()
              .rename("n_captions").reset_index())
    shares = totals.merge(unknown, on="entity", how="left").fillna({"n_unknown": 0, "unknown_share": 0.0})
    shares["n_unknown"] = shares["n_unknown"].astype(int)
    tables = {
        "caption_accuracy": Table(
            "Caption country accuracy",
            tidy(evaluation, dataset, source=evaluation_path),
            "Share of the captions with a known country whose predicted country is right, overall and per "
            "subset, with Wilson 95% intervals; n_unknown: captions for which no place could be predicted "
            "(they count as wrong).",
            [evaluation_path], None,
            ["scope", "subset", "n", "correct", "accuracy", "ci_low", "ci_high", "n_unknown"]),
        "caption_unknown": Table(
            "Captions with no predicted place (Unknown)",
            tidy(shares, dataset, source=distributions_path),
            "Per entity ('all': every caption naming an entity, once each) the captions counted and the share "
            "whose country is Unknown (no usable place mention).",
            [distributions_path], f"results/figures/{dataset}/caption_continents.png",
            ["entity", "n_captions", "n_unknown", "unknown_share"]),
    }
    if inputs.get("diversity"):
        diversity_path = str(inputs["diversity"])
        tables["caption_diversity"] = Table(
            "Caption diversity (Vendi score)",
            tidy(pd.read_parquet(diversity_path), dataset, source=diversity_path),
            "Vendi score (the effective number of distinct items; 1: all alike) of the image and of the "
            "caption embeddings per entity and predicted country with enough captions.",
            [diversity_path], None, ["entity", "country", "n", "vendi_image", "vendi_caption"])
    return tables


# ---- street views in depth: regions, models compared, planted answers ---------------------------------
def geo_depth_tables(inputs: Mapping, settings: Mapping) -> dict[str, Table]:
    dataset = settings["dataset"]
    pairs_path, regional_path = str(inputs["model_comparisons"]), str(inputs["regional"])
    pairs = pd.read_parquet(pairs_path)
    regional = pd.read_parquet(regional_path)
    continents = regional[(regional["attribute"] == "continent") &
                          (regional["metric"].isin(["geoscore", "correct"]) | (regional["metric"] == "probe_top1_country"))]
    tables = {
        "geo_model_pairs": Table(
            "Models compared on the same queries",
            tidy(pairs, dataset, model="", variant="", source=pairs_path),
            "Every pair of models and variants on the same kNN queries: the paired bootstrap of the mean "
            "GeoScore difference (a − b, 95% CI) and McNemar's test of country-level top-1 correctness, "
            f"Holm-corrected over the pairs of each test at alpha {settings['alpha']} (reject_holm).",
            [pairs_path], f"results/figures/{dataset}/cka.png",
            ["model_a", "model_b", "test", "n_pairs", "value_a", "value_b", "difference", "ci_low", "ci_high",
             "p_holm", "reject_holm"]),
        "regional_continents": Table(
            "GeoScore and country accuracy per continent",
            tidy(continents.drop(columns=["centroid_latitude", "centroid_longitude"], errors="ignore"), dataset,
                 source=regional_path),
            "Per model and continent: the number and share of kNN queries, the mean GeoScore (metric "
            "geoscore) or country-level top-1 correctness (metric correct) with a 95% bootstrap CI, and "
            "the Kruskal-Wallis p across continents; below_min_n: too few queries to enter the tests. "
            "probe_top1_country: the country probe's accuracy over its held-out images of the continent.",
            [regional_path], f"results/figures/{dataset}/regional_continents.png",
            ["model", "variant", "metric", "group", "n", "share", "mean", "ci_low", "ci_high", "below_min_n",
             "p_kruskal"]),
    }
    tables["geo_failures"] = failure_table(str(inputs["failures"]), dataset)
    return tables


# failures shown per model and kind in the summary (failures.parquet lists geo.depth.n_worst)
SUMMARY_FAILURES = 3


def failure_table(path: str, dataset: str) -> Table:
    """The worst kNN queries (top-1 method, the first features listed) and the most confident wrong
    country-probe answers (same features where probed) of each model, SUMMARY_FAILURES of each."""
    shown = shown_failures(pd.read_parquet(path), None, "top1", ["country"], SUMMARY_FAILURES)
    return Table(
        "Worst failures per model",
        tidy(shown, dataset, source=path),
        f"Per model, its {SUMMARY_FAILURES} lowest-GeoScore kNN queries (kind knn: top-1 kNN, true -> "
        f"predicted country, error in km) and its {SUMMARY_FAILURES} most confident wrong country-probe "
        "answers (kind probe: confidence = the predicted class's probability; km to the spherical mean of "
        "the predicted country's images), each with its nearest gallery images; failures.parquet lists "
        "geo.depth.n_worst of each, per features, kNN method and probe level.",
        [path], f"results/figures/{dataset}/failure_gallery.png",
        ["model", "variant", "kind", "features", "rank", "image_id", "true", "predicted", "distance_km",
         "geoscore", "confidence", "neighbours"])


def planted_tables(inputs: Mapping, settings: Mapping) -> dict[str, Table]:
    dataset, path = settings["dataset"], str(inputs["planted"])
    return {"planted": Table(
        "Planted answers recovered (synthetic streets)",
        tidy(pd.read_parquet(path), dataset, variant="frozen", source=path),
        "The synthetic streets carry planted answers (a colour cast per country, fog over one land cover, a "
        "weak continent); per model, whether each study found its answer: observed against its reference "
        "(majority class, shuffled gallery, the planted group's mean GeoScore).",
        [path], f"results/figures/{dataset}/regional_world.png",
        ["model", "check", "observed", "reference", "n", "recovered"])}


def faithfulness_tables(inputs: Mapping, settings: Mapping) -> dict[str, Table]:
    from encoderlens.faithfulness.stats import representative_maps

    dataset = settings["dataset"]
    plausibility_path, comparisons_path = str(inputs["plausibility"]), str(inputs["comparisons"])
    plausibility = pd.read_parquet(plausibility_path)
    parts = [representative_maps(frame) for _, frame in plausibility.groupby(["model", "variant"], sort=False)]
    points = pd.concat(parts, ignore_index=True) if parts else plausibility.iloc[:0]
    comparisons = pd.read_parquet(comparisons_path)
    against = comparisons[(comparisons["kind"] == "random") & (comparisons["metric"] == "deletion_auc")
                          & (comparisons["order_a"] == "map")]
    against = against.rename(columns={"method_a": "method", "layer_a": "layer", "head_a": "head",
                                      "mean_b": "random_deletion_mean", "mean_diff": "delta_vs_random",
                                      "diff_ci_low": "delta_ci_low", "diff_ci_high": "delta_ci_high",
                                      "reject_ttest": "holm_significant"})
    keys = ["model", "variant", "method", "layer", "head"]
    table = points.merge(against[[*keys, "random_deletion_mean", "delta_vs_random", "delta_ci_low",
                                  "delta_ci_high", "p_ttest_holm", "holm_significant"]], on=keys, how="left")
    table = table[[*keys, "n", "deletion_mean", "deletion_ci_low", "deletion_ci_high", "random_deletion_mean",
                   "delta_vs_random", "delta_ci_low", "delta_ci_high", "p_ttest_holm", "holm_significant",
                   "threshold", "iou_mean", "iou_ci_low", "iou_ci_high", "rho_images", "rho_maps", "small_n"]]
    return {"faithfulness": Table(
        "Faithfulness of the maps, beside their plausibility",
        tidy(table, dataset),
        "Per model and method (its head-mean map at its last stored layer): mean deletion AUC (the explained "
        "scalar's area under the deletion curve, cells removed in the map's order; lower is more faithful) "
        "with a 95% bootstrap CI, the same for the random order on the same images, their paired difference "
        "(map − random; negative: the map finds what matters faster than chance) with its CI and Holm-"
        "corrected paired t p-value, and the mean IoU with the expert boxes at the reference threshold. "
        "rho_images: Spearman's rho of IoU and deletion AUC over images; rho_maps: over the model's maps. "
        f"{LAYER_HEAD_NOTE}.",
        [plausibility_path, comparisons_path], f"results/figures/{dataset}/plausibility_faithfulness.png",
        ["model", "variant", "method", "layer", "n", "deletion_mean", "random_deletion_mean", "delta_vs_random",
         "p_ttest_holm", "iou_mean", "rho_images"])}


@dataclass(frozen=True)
class Study:
    title: str
    tables: tuple[str, ...]
    make: Callable[[Mapping, Mapping], dict[str, Table]]


# one entry per study, in the summary's order
STUDIES: dict[str, Study] = {
    "alignment": Study("Where do encoders look? (alignment)",
                       ("leaderboard", "model_comparisons", "variant_comparisons", "head_specialisation"),
                       alignment_tables),
    "finetune": Study("Does task training move attention? (fine-tuning)", ("finetune",), finetune_tables),
    "style_probe": Study("Do the embeddings carry style? (style probe)", ("style_probe",), style_probe_tables),
    "geo": Study("What does an encoder know about place? (street views)", ("probes", "knn"), geo_tables),
    "geo_depth": Study("Where does geolocation fail, for whom, and how do models differ? (street views)",
                       ("geo_model_pairs", "regional_continents", "geo_failures"), geo_depth_tables),
    "faithfulness": Study("Does the map matter to the model? (faithfulness)", ("faithfulness",),
                          faithfulness_tables),
    "planted": Study("Planted answers (synthetic streets)", ("planted",), planted_tables),
    "calibration": Study("Distance calibration", ("calibration",), calibration_tables),
    "captions": Study("Where do the captions' images come from? (captions)",
                      ("caption_accuracy", "caption_unknown", "caption_diversity"), caption_tables),
}


def study_tables(study: str, inputs: Mapping, settings: Mapping) -> dict[str, Table]:
    if study not in STUDIES:
        raise ValueError(f"unknown study {study!r}; known: {sorted(STUDIES)}")
    return STUDIES[study].make(inputs, settings)


# ---- writing ------------------------------------------------------------------------------------------
def format_value(value) -> str:
    """How a number appears in the summary and the HTML tables: 4 significant digits, integers whole."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if float(value).is_integer() and abs(value) < 1e15:
            return str(int(value))
        return f"{float(value):.4g}"
    return str(value)


def _shown(table: Table, limit: int | None) -> tuple[pd.DataFrame, int]:
    frame = table.frame
    columns = [c for c in (table.summary_columns or list(frame.columns)) if c in frame.columns]
    columns += [c for c in _flags(frame) if c not in columns]
    if table.summary_order and table.summary_order in frame.columns and len(frame):
        frame = frame.reindex(frame[table.summary_order].abs().sort_values(ascending=False, kind="stable").index)
    shown = frame[columns]
    if limit is not None and len(shown) > limit:
        return shown.head(limit), len(frame) - limit
    return shown, 0


def table_html(table: Table, csv_name: str | None = None) -> str:
    """A standalone HTML page of one headline table (all rows) for the Snakemake report."""
    frame = table.frame
    body = _html_rows(frame, list(frame.columns))
    sources = "".join(f"<li><code>{html.escape(s)}</code></li>" for s in table.sources)
    figure = f"<p>Figure: <code>{html.escape(table.figure)}</code></p>" if table.figure else ""
    csv = f"<p>CSV copy: <code>{html.escape(csv_name)}</code></p>" if csv_name else ""
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(table.title)}</title>"
            f"<style>{_CSS}</style></head><body><h2>{html.escape(table.title)}</h2>"
            f"<p>{html.escape(table.note)}</p>{body}<p>From:</p><ul>{sources}</ul>{figure}{csv}</body></html>\n")


_CSS = ("body{font:13px/1.4 system-ui,sans-serif;margin:1em;color:#222}table{border-collapse:collapse;"
        "margin:.5em 0}th,td{border:1px solid #ccc;padding:2px 6px;text-align:right}th{background:#f3f3f3}"
        "td.t{text-align:left}code{font-size:12px}")


def _html_rows(frame: pd.DataFrame, columns: list[str]) -> str:
    if frame.empty:
        return "<p><em>no rows</em></p>"
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    rows = []
    for values in frame[columns].itertuples(index=False):
        cells = "".join(
            f"<td class='t'>{html.escape(format_value(v))}</td>" if isinstance(v, str)
            else f"<td>{html.escape(format_value(v))}</td>" for v in values)
        rows.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _markdown_rows(frame: pd.DataFrame) -> str:
    columns = list(frame.columns)
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for values in frame.itertuples(index=False):
        lines.append("| " + " | ".join(format_value(v).replace("|", "\\|") for v in values) + " |")
    return "\n".join(lines)


def read_table_csv(path) -> pd.DataFrame:
    # keep_default_na=False: "NA" is Namibia in the caption tables
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


def write_study_tables(study: str, dataset: str, tables: Mapping[str, Table],
                       outputs: Mapping[str, Mapping[str, str]], index_path) -> None:
    """Write each table as CSV (with `source` and `figure` columns) and as a standalone HTML page, and
    an index (JSON) of the study's tables for the summary. `outputs`: name -> {"csv", "html"} paths."""
    from encoderlens.tables import write_table

    from .figures import _write_text

    expected = set(STUDIES[study].tables)
    unknown = set(outputs) - expected
    if unknown:
        raise ValueError(f"study {study!r} has no tables {sorted(unknown)}; it makes {sorted(expected)}")
    entries = []
    for name in STUDIES[study].tables:
        if name not in outputs:
            continue
        table = tables.get(name)
        if table is None:
            raise ValueError(f"study {study!r} made no table {name!r} from its inputs")
        paths = outputs[name]
        frame = table.frame.copy()
        if "source" not in frame.columns:
            frame["source"] = "; ".join(table.sources)
        frame["figure"] = table.figure or ""
        write_table(frame, paths["csv"])
        _write_text(Path(paths["html"]), table_html(table, str(paths["csv"])))
        entries.append({"name": name, "title": table.title, "note": table.note, "csv": str(paths["csv"]),
                        "html": str(paths["html"]), "sources": table.sources, "figure": table.figure,
                        "summary_columns": table.summary_columns, "summary_order": table.summary_order})
    index = {"study": study, "dataset": dataset, "tables": entries}
    _write_text(Path(index_path), json.dumps(index, indent=1) + "\n")


def read_indexes(paths) -> dict[str, dict[str, dict]]:
    """dataset -> study -> index, from the studies' table indexes (any order)."""
    datasets: dict[str, dict[str, dict]] = {}
    for path in paths:
        index = _read_json(path)
        datasets.setdefault(index["dataset"], {})[index["study"]] = index
    return datasets


def _tables_of(datasets: Mapping[str, Mapping[str, dict]]):
    """(dataset, study title or None, Table, csv path, rows left out) in the summary's order."""
    for dataset, studies in datasets.items():
        yield dataset, None, None, None, 0
        for study, entry in STUDIES.items():
            if study not in studies:
                continue
            yield dataset, entry.title, None, None, 0
            for item in studies[study]["tables"]:
                frame = read_table_csv(item["csv"])
                table = Table(item["title"], frame, item["note"], item["sources"], item["figure"],
                              item["summary_columns"], item["summary_order"])
                yield dataset, entry.title, table, item["csv"], 0


INTRO = ("The headline numbers of every study that ran, per dataset, read from the studies' own output "
         "files (never recomputed). Under each table: the CSV copy with every row (`dataset`, `model`, "
         "`variant` columns; `source` names the file each row comes from) and the figure that draws it. "
         f"{LAYER_HEAD_NOTE[0].upper()}{LAYER_HEAD_NOTE[1:]}; the config's layer -1 means the last layer.")


def summary_markdown(datasets: Mapping[str, Mapping[str, dict]], limit: int = SUMMARY_ROWS) -> str:
    """The run's summary as Markdown. `datasets`: from `read_indexes`; a study that did not run is absent."""
    lines = ["# encoderlens: summary of the run", "", INTRO, ""]
    for dataset, title, table, csv, _ in _tables_of(datasets):
        if title is None:
            lines += [f"## {dataset}", ""]
            if not datasets[dataset]:
                lines += ["No study of this dataset produced a headline table.", ""]
            continue
        if table is None:
            lines += [f"### {title}", ""]
            continue
        shown, more = _shown(table, limit)
        lines += [f"**{table.title}.** {table.note}", ""]
        lines += [_markdown_rows(shown) if len(shown) else "_No rows._", ""]
        lines += ["; ".join(_pointers(table, csv, more, "`{}`")) + ".", ""]
    return "\n".join(lines).rstrip() + "\n"


def summary_html(datasets: Mapping[str, Mapping[str, dict]], limit: int = SUMMARY_ROWS) -> str:
    """The same summary as one HTML page (for the Snakemake report)."""
    parts = ["<h1>encoderlens: summary of the run</h1>", f"<p>{html.escape(INTRO)}</p>"]
    for dataset, title, table, csv, _ in _tables_of(datasets):
        if title is None:
            parts.append(f"<h2>{html.escape(dataset)}</h2>")
            continue
        if table is None:
            parts.append(f"<h3>{html.escape(title)}</h3>")
            continue
        shown, more = _shown(table, limit)
        parts.append(f"<p><strong>{html.escape(table.title)}.</strong> {html.escape(table.note)}</p>")
        parts.append(_html_rows(shown, list(shown.columns)))
        pointers = _pointers(table, csv, more, "<code>{}</code>", escape=True)
        parts.append(f"<p>{'; '.join(pointers)}.</p>")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>encoderlens summary</title>"
            f"<style>{_CSS}</style></head><body>{''.join(parts)}</body></html>\n")


def _pointers(table: Table, csv, more: int, code: str, escape: bool = False) -> list[str]:
    quote = (lambda s: code.format(html.escape(str(s)))) if escape else (lambda s: code.format(s))
    pointers = [f"{more} more rows in {quote(csv)}" if more else f"all rows: {quote(csv)}"]
    if table.sources:
        shown = table.sources[:4]
        pointers.append("from " + ", ".join(quote(s) for s in shown)
                        + (f" and {len(table.sources) - 4} more" if len(table.sources) > 4 else ""))
    if table.figure:
        pointers.append(f"figure {quote(table.figure)}")
    return pointers


def write_summary(index_paths, markdown_path, html_path) -> None:
    """results/summary.md and summary.html from the studies' table indexes."""
    import sys

    from .figures import _write_text

    datasets = read_indexes(index_paths)
    _write_text(Path(markdown_path), summary_markdown(datasets))
    _write_text(Path(html_path), summary_html(datasets))
    print(f"summary of {len(datasets)} dataset(s): "
          + "; ".join(f"{d} ({', '.join(studies)})" for d, studies in datasets.items()), file=sys.stderr)
