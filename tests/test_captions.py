"""Caption geo-profiling: gazetteer extraction, entity filter, prediction, distributions, evaluation,
diversity (checked against the vendi-score package) and entity presence."""

import numpy as np
import pandas as pd
import pytest

from encoderlens.captions.diversity import diversity_table, vendi_score
from encoderlens.captions.gazetteer import Gazetteer, extract_mentions, normal_form
from encoderlens.captions.geography import continents, country_names
from encoderlens.captions.names import place_names
from encoderlens.captions.predict import assemble_predictions, predict_from_candidates
from encoderlens.captions.profile import distributions, evaluation, wilson_interval
from encoderlens.captions.table import entity_mentions, read_caption_table

PLACES = pd.DataFrame({
    "geonameid": [1, 2, 3, 4, 5, 6, 7],
    "name": ["Paris", "Paris", "Windhoek", "Nice", "Douglas", "Douglas", "Man"],
    "asciiname": ["Paris", "Paris", "Windhoek", "Nice", "Douglas", "Douglas", "Man"],
    "alternatenames": ["Parigi,PAR,paname", "", "Vindhuk,Windhuk", "Nizza", "", "", ""],
    "latitude": [48.85, 33.66, -22.56, 43.7, 54.15, 31.3, 7.4],
    "longitude": [2.35, -95.55, 17.08, 7.27, -4.48, -109.5, -7.55],
    "cc": ["FR", "US", "NA", "FR", "IM", "US", "CI"],
    "admin1": "", "admin2": "",
    "population": [2_138_551, 24_782, 268_132, 338_620, 26_218, 17_378, 146_974],
})


@pytest.fixture(scope="module")
def gazetteer():
    names = place_names(PLACES, min_population=10_000, alternate_names="latin")
    return Gazetteer(names["name"])


def mentions_of(gazetteer, text):
    return [mention for mention, _, _ in gazetteer.find(text)]


def test_alternate_names_keep_latin_names_and_drop_codes_and_transliterations():
    names = place_names(PLACES, 10_000, "latin")
    paris = set(names.loc[names["place"] == 0, "name"])
    assert paris == {"Paris", "Parigi"}  # not the code PAR nor the lower-case "paname"
    assert {"Vindhuk", "Windhuk"} <= set(names.loc[names["cc"] == "NA", "name"])
    assert set(place_names(PLACES, 10_000, "none").query("kind == 'city'")["name"]) == set(PLACES["name"])
    assert len(place_names(PLACES, 200_000, "none").query("kind == 'city'")) == 3
    countries = names[names["kind"] == "country"]
    assert "Namibia" in set(countries.loc[countries["cc"] == "NA", "name"])


def test_gazetteer_matches_whole_words_only(gazetteer):
    assert mentions_of(gazetteer, "A gondola in Venice.") == []          # Nice inside Venice
    assert mentions_of(gazetteer, "Parisian cafes") == []                # Paris inside Parisian
    assert mentions_of(gazetteer, "A house in Nice, France.") == ["Nice", "France"]
    assert mentions_of(gazetteer, "A car in NICE") == ["NICE"]


def test_gazetteer_keeps_namibia_and_alternate_names(gazetteer):
    found = gazetteer.find("A red house in Windhoek, Namibia. Also Vindhuk.")
    assert [m for m, _, _ in found] == ["Windhoek", "Namibia", "Vindhuk"]
    text = "A red house in Windhoek, Namibia. Also Vindhuk."
    assert all(text[start:end] == mention for mention, start, end in found)


def test_gazetteer_leaves_ambiguity_to_prediction_and_prefers_the_longest_name(gazetteer):
    assert mentions_of(gazetteer, "Douglas, Isle of Man: a church") == ["Douglas", "Isle of Man"]
    assert mentions_of(gazetteer, "A man walks in Paris") == ["Paris"]   # lower-case "man" is no place
    assert mentions_of(gazetteer, "The church of Paris") == ["Paris"]    # stop words are not places
    assert normal_form("Sainte-Anne") == normal_form("SAINTE ANNE") == "sainte anne"
    assert normal_form("Réunion") == "reunion"


def test_entity_filter_is_whole_word_with_simple_plurals():
    texts = ["Two cars in Nice", "A Car.", "carpet shop", "a scar", "churches of Rome", "car-park",
             "the city's cities"]
    flags = entity_mentions(texts, ["car", "church", "city"])
    assert flags["car"].tolist() == [True, True, False, False, False, True, False]
    assert flags["church"].tolist() == [False, False, False, False, True, False, False]
    assert flags["city"].tolist() == [False, False, False, False, False, False, True]


def candidates_for(rows):
    return pd.DataFrame(rows, columns=["image_id", "mention", "cc", "population", "similarity"])


def test_prediction_uses_population_for_ties_and_a_named_country_to_resolve_them():
    candidates = candidates_for([
        ("a", "Paris", "FR", 2_138_551, 1.0), ("a", "Paris", "US", 24_782, 1.0),
        ("b", "Douglas", "US", 17_378, 1.0), ("b", "Douglas", "IM", 26_218, 1.0),
        ("b", "Isle of Man", "IM", 84_077, 1.0),
        ("c", "Dougls", "IM", 26_218, 0.70),                                   # below min_similarity
        ("d", "Windhoek", "NA", 268_132, 0.95), ("d", "Windhoek", "DE", 10_000_000, 0.80),
    ])
    result = predict_from_candidates(candidates, ["a", "b", "c", "d", "e"], min_similarity=0.8,
                                     margin=0.02, population_exponent=0.5).set_index("image_id")
    assert result["country_pred"].to_dict() == {"a": "FR", "b": "IM", "c": "Unknown", "d": "NA",
                                                "e": "Unknown"}
    fr, us = np.sqrt(2_138_551), np.sqrt(24_782)
    assert result.loc["a", "confidence"] == pytest.approx(fr / (fr + us))
    us, im = np.sqrt(17_378), np.sqrt(26_218)
    assert result.loc["b", "confidence"] == pytest.approx((im / (us + im) + 1) / 2)


def predictions_table():
    captions = pd.DataFrame({
        "image_id": ["1", "2", "3", "4", "5", "6"],
        "country_true": ["NA", "FR", "FR", "", "US", "NA"],
        "subset": ["a", "a", "b", "b", "b", ""],
        "language": "en",
    })
    translated = pd.DataFrame({"image_id": captions["image_id"], "translated": False, "text": [
        "A house and a car in Windhoek", "Cars in Paris", "A church", "houses", "View of Paris",
        "A house in Windhoek"]})
    predicted = pd.DataFrame({"image_id": ["1", "2", "3", "4", "5", "6"],
                              "country_pred": ["NA", "FR", "Unknown", "FR", "FR", "NA"],
                              "confidence": [1.0, 0.9, 0.0, 0.9, 0.9, 1.0]})
    mentions = pd.DataFrame({"image_id": ["1", "2", "4", "5", "6"],
                             "mention": ["Windhoek", "Paris", "Paris", "Paris", "Windhoek"]})
    return assemble_predictions(captions, translated, mentions, predicted,
                                ["house", "car", "church"], "candidates")


def test_distributions_sum_to_the_number_of_captions_per_entity_and_keep_unknown():
    predictions = predictions_table()
    assert predictions.groupby("image_id")["entity"].apply(sorted).to_dict() == {
        "1": ["car", "house"], "2": ["car"], "3": ["church"], "4": ["house"], "5": [""], "6": ["house"]}
    table = distributions(predictions)
    expected = {"all": 5, "house": 3, "car": 2, "church": 1}
    for (entity, level), group in table.groupby(["entity", "level"]):
        assert group["count"].sum() == expected[entity]
        assert group["share"].sum() == pytest.approx(1.0)
    house = table[(table["entity"] == "house") & (table["level"] == "country")]
    assert dict(zip(house["place"], house["count"])) == {"NA": 2, "FR": 1}
    church = table[(table["entity"] == "church") & (table["level"] == "continent")]
    assert church["place"].tolist() == ["Unknown"]
    continent = table[(table["entity"] == "all") & (table["level"] == "continent")]
    assert dict(zip(continent["place"], continent["count"])) == {"Africa": 2, "Europe": 2, "Unknown": 1}


def test_evaluation_matches_scikit_learn_and_statsmodels():
    from sklearn.metrics import accuracy_score
    from statsmodels.stats.proportion import proportion_confint

    predictions = predictions_table()
    table, confusion = evaluation(predictions, top=2)
    labelled = predictions.drop_duplicates("image_id").query("country_true != ''")
    overall = table[table["scope"] == "overall"].iloc[0]
    assert overall["n"] == 5 and overall["n_unknown"] == 1
    assert overall["accuracy"] == pytest.approx(accuracy_score(labelled["country_true"],
                                                               labelled["country_pred"]))
    low, high = proportion_confint(overall["correct"], overall["n"], method="wilson")
    assert (overall["ci_low"], overall["ci_high"]) == pytest.approx((low, high))
    per_subset = table[table["scope"] == "subset"].set_index("subset")["accuracy"].to_dict()
    assert per_subset == {"a": 1.0, "b": 0.0}
    assert confusion["count"].sum() == 5
    assert set(confusion["country_true"]) == {"NA", "FR", "other"}
    assert wilson_interval(0, 0) != wilson_interval(0, 0)  # NaN without captions


def test_namibia_survives_continents_country_names_and_a_csv_round_trip(tmp_path):
    assert continents(["NA", "ZA", "Unknown", "XX"]) == {"NA": "Africa", "ZA": "Africa",
                                                         "Unknown": "Unknown", "XX": "Unknown"}
    assert "Namibia" in set(country_names().query("cc == 'NA'")["name"])
    (tmp_path / "captions.csv").write_text("id,caption,country,subset\nNA,A house in Windhoek,NA,NA\n"
                                           "x2,A car,,\n")
    table = read_caption_table(tmp_path)
    assert table.loc[0].to_dict() == {"image_id": "NA", "caption": "A house in Windhoek",
                                      "language": "en", "country_true": "NA", "subset": "NA",
                                      "image": ""}
    assert table.loc[1, "country_true"] == ""
    table.to_parquet(tmp_path / "t.parquet")
    assert pd.read_parquet(tmp_path / "t.parquet").loc[0, "country_true"] == "NA"
    (tmp_path / "captions.csv").write_text("id,caption\na,x\na,y\n")
    with pytest.raises(ValueError, match=r"captions.csv: line 3: duplicate id 'a'"):
        read_caption_table(tmp_path)


def test_extract_mentions_table(gazetteer):
    table = extract_mentions(["1", "2"], ["Nice and Paris", "nothing here"], gazetteer)
    assert table[["image_id", "mention", "start", "end"]].values.tolist() == [
        ["1", "Nice", 0, 4], ["1", "Paris", 9, 14]]


def test_vendi_score_matches_the_vendi_score_package():
    from vendi_score import vendi

    rng = np.random.default_rng(0)
    for n, d in [(7, 16), (40, 5), (3, 3)]:
        x = rng.normal(size=(n, d))
        unit = x / np.linalg.norm(x, axis=1, keepdims=True)
        assert vendi_score(x) == pytest.approx(vendi.score_X(x), rel=1e-9)
        assert vendi_score(x) == pytest.approx(vendi.score_K(unit @ unit.T), rel=1e-9)
    assert vendi_score(np.ones((5, 3))) == pytest.approx(1.0)
    assert vendi_score(np.eye(4)) == pytest.approx(4.0)


def test_diversity_groups_need_min_items():
    predictions = pd.DataFrame({"image_id": list("abcdef"), "entity": ["car"] * 4 + ["house"] * 2,
                                "country_pred": ["FR", "FR", "FR", "NA", "NA", "NA"]})
    eye = np.eye(6)
    vectors = {i: eye[k] for k, i in enumerate("abcdef")}
    table = diversity_table(predictions, vectors, vectors, min_items=3)
    assert table[["entity", "country", "n"]].values.tolist() == [["all", "FR", 3], ["all", "NA", 3],
                                                                 ["car", "FR", 3]]
    assert table["vendi_image"].tolist() == pytest.approx([3.0, 3.0, 3.0])


def test_entity_presence_svm_separates_planted_embeddings():
    from encoderlens.captions.presence import entity_presence

    rng = np.random.default_rng(1)
    ids = [f"i{k}" for k in range(60)]
    entity = ["car"] * 30 + [""] * 30
    features = rng.normal(size=(60, 8))
    features[:30, 0] += 4.0  # the "car" direction
    predictions = pd.DataFrame({"image_id": ids, "entity": entity, "language": "en", "translated": False})
    presence, summary = entity_presence(predictions, ids, features, ["car"], "m", folds=5)
    assert summary.loc[0, "cv_accuracy"] > 0.9 and summary.loc[0, "folds"] == 5
    assert summary.loc[0, "n_positive"] == 30 and summary.loc[0, "n_negative"] == 30
    assert presence["shows_entity"].sum() == pytest.approx(30, abs=3)


def test_entity_presence_is_the_same_on_a_second_run():
    # liblinear shuffles coordinates with its own RNG; an unseeded SVM differed between runs
    from encoderlens.captions.presence import entity_presence

    rng = np.random.default_rng(2)
    ids = [f"i{k}" for k in range(40)]
    features = rng.normal(size=(40, 64))  # more dimensions than images: many coordinate orders
    predictions = pd.DataFrame({"image_id": ids, "entity": ["car"] * 20 + [""] * 20, "language": "en",
                                "translated": False})
    first, _ = entity_presence(predictions, ids, features, ["car"], "m", folds=4, seed=3)
    second, _ = entity_presence(predictions, ids, features, ["car"], "m", folds=4, seed=3)
    pd.testing.assert_frame_equal(first, second, check_exact=True)
