"""The dashboard in a real headless Chromium (Playwright driving the system's binary): loaded from
file:// and from `python -m http.server`, selectors change the canvas, the IoU shown is the table's."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pandas as pd
import pytest

from dashboard_support import (MODELS, SETTINGS, THRESHOLDS, canvas_pixels, choose, chromium_binary,
                               expected_scores, registered, shown_scores, wait_ready, write_geo_and_captions,
                               write_plausibility, write_study)
from encoderlens.alignment.resize import upsample
from encoderlens.alignment.thresholds import mass_threshold
from encoderlens.report.dashboard import build_dashboard
from encoderlens.report.dashboard_encode import b85

CHROMIUM = chromium_binary()
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH "
                                "(Debian: apt-get install chromium); the browser tests need one")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("dashboard_browser")
    layout = write_plausibility(root, write_study(root, seed=3)) | write_geo_and_captions(root / "results")
    site = build_dashboard(layout, root / "dashboard", SETTINGS, results=root / "results")
    return root, site


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    yield page
    page.close()
    assert not errors, errors


@pytest.fixture(scope="module")
def http_server(study):
    _, site = study
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                               "--directory", str(site)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    for _ in range(100):
        try:
            urllib.request.urlopen(url, timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    yield url
    server.terminate()
    server.wait(timeout=10)


def _table(root, model, variant):
    return pd.read_parquet(root / "results" / "demo" / model / variant / "alignment.parquet")


def _check_scores(page, root, image_id):
    selection = page.evaluate("() => encoderlens.state.selection")
    for variant in MODELS[selection["model"]]:
        expected = expected_scores(_table(root, selection["model"], variant), image_id, selection)
        assert shown_scores(page, variant) == expected, (variant, selection)
    return selection


def _interact(page, root, image_id, screenshot):
    """Change model, layer, head and threshold; each change repaints the canvas and shows the
    table's scores for the new selection in every variant's panel (side by side)."""
    wait_ready(page)
    assert page.locator("#page-image .panel").count() == len(MODELS["vit_a"])  # frozen and lora
    selection = _check_scores(page, root, image_id)
    assert selection == {"model": "vit_a", "variant": "all", "method": "cls", "layer": 3, "head": -1,
                         "threshold": 30}
    before = canvas_pixels(page, "frozen")
    for name, value in [("layer", 1), ("head", 2), ("threshold", 10), ("model", "cnn_b"),
                        ("model", "vit_a"), ("method", "rollout"), ("method", "cls"), ("head", 0),
                        ("threshold", 50)]:
        choose(page, name, value)
        after = canvas_pixels(page, "frozen")
        assert after.shape != before.shape or np.abs(after - before).sum() > 0, f"{name}={value} left the canvas unchanged"
        before = after
        _check_scores(page, root, image_id)
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000


def test_file_url_interaction_changes_canvas_and_shows_table_scores(study, page, tmp_path):
    root, site = study
    page.goto(f"file://{site}/index.html#image/0/1")
    _interact(page, root, "img1", tmp_path / "dashboard_file.png")
    print(json.dumps({"timings": page.evaluate("() => encoderlens.timings()")}))


def test_http_server_loads_image_data_on_demand(study, page, http_server, tmp_path):
    root, _ = study
    page.goto(http_server + "index.html#gallery")
    page.wait_for_function("() => document.body.dataset.ready === '1'")
    loaded = lambda: [e.split("/")[-1] for e in page.evaluate(  # noqa: E731
        "() => performance.getEntriesByType('resource').map(e => e.name)") if "/images/" in e]
    assert loaded() == []  # the gallery needs no per-image data
    page.click("#page-gallery a[href='#image/0/2']")
    _interact(page, root, "img2", tmp_path / "dashboard_http.png")
    assert loaded() == ["0002.js"]


def test_unscorable_head_is_shown_as_such(study, page):
    root, site = study
    page.goto(f"file://{site}/index.html#image/0/0")  # img0: layer 1, head 1 of vit_a/frozen is NaN
    wait_ready(page)
    choose(page, "layer", 1)
    choose(page, "head", 1)
    assert shown_scores(page, "frozen")["iou"] == "n/a"
    _check_scores(page, root, "img0")


def test_other_pages_render(study, page):
    _, site = study
    page.goto(f"file://{site}/index.html#leaderboard")
    page.wait_for_function("() => document.body.dataset.ready === '1'")
    rows = page.locator("#page-leaderboard table.leaderboard tr").count()
    assert rows == 1 + sum(len(v) * (2 if m == "vit_a" else 1) for m, v in MODELS.items()) + 2  # + baselines
    # plausibility vs faithfulness: one point and one row per method (cls at its last layer, rollout)
    assert page.locator("#page-leaderboard .faithfulness svg .point").count() == 2
    assert page.locator("#page-leaderboard table.faithfulness tr").count() == 1 + 2
    page.goto(f"file://{site}/index.html#features")
    page.wait_for_selector("#page-features table.heat")
    assert page.locator("#page-features table.breakdown tr").count() > 1
    for tab in ("geo", "captions"):
        page.goto(f"file://{site}/index.html#{tab}")
        assert page.locator(f"#page-{tab} svg.chart").count() >= 1


def test_page_resampling_and_decoding_match_the_analysis(study, page):
    _, site = study
    page.goto(f"file://{site}/index.html#gallery")
    page.wait_for_function("() => document.body.dataset.ready === '1'")
    rng = np.random.default_rng(7)
    for gh, gw, size in [(4, 4, 32), (5, 7, 64), (14, 14, 224), (7, 7, 224)]:
        grid = rng.gamma(0.5, size=(gh, gw)).astype(np.float32)
        shown = np.array(page.evaluate("([m, gh, gw, s]) => Array.from(encoderlens.upsample(m, gh, gw, s))",
                                       [grid.ravel().tolist(), gh, gw, size])).reshape(size, size)
        assert np.allclose(shown, upsample(grid, size), rtol=1e-5, atol=1e-6)
        for percent in THRESHOLDS:
            region = np.array(page.evaluate("([v, p]) => Array.from(encoderlens.massRegion(Float32Array.from(v), p))",
                                            [shown.ravel().tolist(), percent]))
            expected = mass_threshold(shown.astype(np.float32), percent).ravel()
            # no ties in a random map: the region is a plain pixel set, drawn exactly
            assert (region == (expected > 0)).all()
    data = rng.integers(0, 256, 1001, dtype=np.uint8)
    decoded = page.evaluate("(t) => Array.from(encoderlens.b85decode(t))", b85(data))
    assert decoded[:1001] == data.tolist()
    codes = [0, 1, 9999, 10000, 12345, 65535]
    assert page.evaluate("(c) => c.map(encoderlens.formatScore)", codes) == [
        "0.0000", "0.0001", "0.9999", "1.0000", "1.2345", "n/a"]


def _no_overflow(page):
    assert page.evaluate("() => document.documentElement.scrollWidth") <= page.viewport_size["width"]


def test_view_state_round_trips_through_the_url(study, browser, page):
    _, site = study
    query = "model=vit_a&variant=lora&method=cls&layer=1&head=2&threshold=10&opacity=0.3&boxes=0&outline=0"
    page.goto(f"file://{site}/index.html#image/0/1?{query}")
    wait_ready(page)
    assert page.evaluate("() => encoderlens.state.selection") == {
        "model": "vit_a", "variant": "lora", "method": "cls", "layer": 1, "head": 2, "threshold": 10}
    assert page.evaluate("() => encoderlens.state.view") == {"opacity": 0.3, "boxes": False, "outline": False}
    assert page.input_value("#select-threshold") == "10" and not page.is_checked("#select-boxes")
    assert page.url.endswith(query)
    choose(page, "threshold", 50)
    shared = page.url
    assert "threshold=50" in shared and "layer=1&head=2" in shared
    pixels = canvas_pixels(page, "lora")
    other = browser.new_page(viewport={"width": 1280, "height": 1000})
    other.goto(shared)
    wait_ready(other)
    assert other.evaluate("() => encoderlens.state.selection")["threshold"] == 50
    assert other.url == shared
    assert (canvas_pixels(other, "lora") == pixels).all()  # the same view, drawn the same
    other.close()


def test_toggles_redraw_and_box_labels_stay_on_the_canvas_without_overlap(study, page):
    _, site = study
    page.goto(f"file://{site}/index.html#image/0/2")  # img2: three overlapping boxes
    wait_ready(page)
    assert page.evaluate("() => encoderlens.state.selection.threshold") == 30  # the figures' reference
    canvas = page.evaluate("() => { const c = document.querySelector('#page-image .panel canvas.overlay');"
                           " return [c.width, c.height]; }")
    rects = page.evaluate("() => encoderlens.state.labelRects")
    for panel, placed in rects.items():
        assert len(placed) == 3, panel
        for k, a in enumerate(placed):
            assert 0 <= a["x"] and a["x"] + a["w"] <= canvas[0] and 0 <= a["y"] and a["y"] + a["h"] <= canvas[1]
            for b in placed[k + 1:]:
                assert (a["x"] + a["w"] <= b["x"] or b["x"] + b["w"] <= a["x"] or
                        a["y"] + a["h"] <= b["y"] or b["y"] + b["h"] <= a["y"]), (a, b)
    before = canvas_pixels(page, "frozen")
    for control in ("#select-boxes", "#select-outline"):
        renders = page.evaluate("() => encoderlens.state.renders")
        page.click(control)
        page.wait_for_function(f"() => encoderlens.state.renders > {renders}")
        after = canvas_pixels(page, "frozen")
        assert np.abs(after - before).sum() > 0, control
        before = after
    assert page.evaluate("() => encoderlens.state.labelRects.frozen") == []
    assert "boxes=0" in page.url and "outline=0" in page.url
    assert page.locator("#page-image .panel .colourbar canvas").count() == 2  # one per variant
    assert page.inner_text("#page-image .panel .colourbar .cmap").startswith("viridis")
    assert page.inner_text("#page-image .panel[data-variant='frozen'] .pointing") in {"hit", "miss", "n/a"} or \
        page.inner_text("#page-image .panel[data-variant='frozen'] .pointing").endswith("of tied maxima")
    _no_overflow(page)


def test_gallery_sorts_by_a_score(study, page):
    _, site = study
    page.goto(f"file://{site}/index.html#gallery")
    page.wait_for_function("() => document.body.dataset.ready === '1'")
    (index,) = registered(site / "data" / "index.js")
    scores = index["datasets"][0]["gallery_scores"]
    key = scores["keys"].index("vit_a · frozen · cls")
    for order in ("1", "0"):
        page.select_option("#select-sort", f"score:{key}")
        page.select_option("#select-order", order)
        shown = [int(i) for i in page.eval_on_selector_all("#page-gallery .gallery a", "as => as.map(a => a.dataset.index)")]
        values = [row[key] for row in scores["values"]]
        scored = sorted((i for i, v in enumerate(values) if v is not None),
                        key=lambda i: (-values[i] if order == "1" else values[i], i))
        assert shown == scored + [i for i, v in enumerate(values) if v is None]
    assert " IoU " in page.inner_text("#page-gallery .gallery a")


def test_geo_and_caption_charts_without_overflow_or_internals(study, page, tmp_path):
    _, site = study
    page.goto(f"file://{site}/index.html#geo")
    page.wait_for_function("() => document.body.dataset.ready === '1'")
    geo = page.locator("#page-geo")
    # probes: 2 models x 2 features x 2 probeable levels (city is not), each with a whisker and a tick
    assert geo.locator("svg.chart rect.column[data-group='country']").count() == 4
    assert geo.locator("svg.chart rect.column").count() >= 8 + 6  # probes, gallery study bars
    assert geo.locator("svg.chart polyline.series").count() == 3 + 3  # GeoScore and cosine: 3 series each
    text = page.inner_text("#page-geo")
    assert "n_iter" not in text and "converged" not in text  # the fit's internals sit in closed details
    page.click("#page-geo details.internals summary")
    assert "n_iter" in page.inner_text("#page-geo details.internals")
    _no_overflow(page)
    page.screenshot(path=str(tmp_path / "geo.png"), full_page=True)
    page.goto(f"file://{site}/index.html#captions")
    captions = page.locator("#page-captions")
    assert captions.locator("tr.unknown td").first.inner_text() == "Unknown"
    assert captions.locator("svg.chart rect.column").count() == 3 + 4  # accuracy per subset; Vendi 2 x 2
    assert "Unknown (no place found or resolved): 2 (0.200)" in page.inner_text("#page-captions")
    _no_overflow(page)


def test_failures_view_lists_failures_and_opens_one_with_its_map_and_neighbours(study, page, tmp_path):
    _, site = study
    page.goto(f"file://{site}/index.html#failures")
    page.wait_for_function("() => document.querySelector('#page-failures')?.dataset.ready === '1'")
    rows = page.locator("#page-failures table.failures tr[data-index]")
    # street_a (frozen, the first model): its two kNN queries and two probe errors
    assert rows.count() == 4
    assert [rows.nth(k).get_attribute("data-kind") for k in range(4)] == ["knn", "knn", "probe", "probe"]
    assert "0.934" in rows.nth(2).inner_text() and "9712" in rows.nth(0).inner_text()
    renders = page.evaluate("() => encoderlens.state.renders")
    rows.nth(0).locator("a.open").click()
    page.wait_for_function(f"() => encoderlens.state.renders > {renders} && "
                           "document.querySelector('#page-failures').dataset.ready === '1'")
    assert page.url.endswith("#failures/0/0")
    panel = page.locator("#page-failures .panel.failure")
    assert "kNN query #1" in panel.locator("h3").inner_text()
    assert panel.locator("td.true").inner_text() == "FR" and panel.locator("td.predicted").inner_text() == "JP"
    assert panel.locator("canvas.overlay").get_attribute("data-map") == "1"  # the attention map drawn over it
    assert [panel.locator(".neighbours figure").nth(k).get_attribute("data-id") for k in range(3)] == ["q4", "q5", "q6"]
    assert all(page.evaluate(f"() => document.querySelectorAll('.neighbours img')[{k}].naturalWidth") > 0
               for k in range(3))
    _no_overflow(page)
    page.screenshot(path=str(tmp_path / "failures.png"), full_page=True)
    # a tuned variant's failure opens without a map; a probe error shows its confidence
    page.goto(f"file://{site}/index.html#failures/0/2")
    page.wait_for_function("() => document.querySelector('#page-failures .panel.failure h3')?.textContent.includes('distcal')"
                           " && document.querySelector('#page-failures').dataset.ready === '1'")
    assert page.locator("#page-failures canvas.overlay").get_attribute("data-map") == "0"
    page.goto(f"file://{site}/index.html#failures/0/4")
    page.wait_for_function("() => document.querySelector('#page-failures').dataset.ready === '1' && "
                           "document.querySelector('#page-failures .panel.failure h3')?.textContent.includes('probe')")
    assert page.locator("#page-failures td.confidence").inner_text() == "0.934"
