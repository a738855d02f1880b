"""The dashboard of the shared demo run: built by the workflow, one data file per annotated image, and in
a real browser the IoU shown for each model is the demo's alignment.parquet value."""

from __future__ import annotations

import pandas as pd
import pytest

from dashboard_support import (canvas_pixels, choose, chromium_binary, expected_scores, registered,
                               shown_scores, wait_ready)

pytestmark = pytest.mark.e2e


def test_demo_dashboard_covers_every_annotated_image_and_model(demo_run):
    site = demo_run / "results" / "dashboard"
    assert (site / "index.html").exists() and (demo_run / "logs" / "dashboard.log").exists()
    (index,) = registered(site / "data" / "index.js")
    (dataset,) = index["datasets"]
    annotations = pd.read_parquet(demo_run / "results" / dataset["name"] / "annotations.parquet")
    assert sorted(image["id"] for image in dataset["images"]) == sorted(annotations["image_id"].unique())
    assert [m["name"] for m in dataset["models"]] == ["tiny_dinov2", "tiny_dinov3", "tiny_mae", "tiny_clip",
                                                      "tiny_siglip", "tiny_resnet"]
    for image in dataset["images"]:
        _, _, payload = registered(site / image["data"])
        assert {e["model"] for e in payload["entries"]} == {m["name"] for m in dataset["models"]}
        assert (site / image["thumb"]).exists() and (site / image["image"]).exists()
    assert [geo["dataset"] for geo in index["geo"]] == ["demo_streets"]
    assert {"probes", "knn", "geometry"} <= set(index["geo"][0]["tables"])


@pytest.mark.skipif(chromium_binary() is None, reason="no chromium binary on PATH (apt-get install chromium)")
def test_demo_dashboard_in_browser_shows_alignment_parquet_scores(demo_run, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    site = demo_run / "results" / "dashboard"
    (index,) = registered(site / "data" / "index.js")
    dataset = index["datasets"][0]
    image_id = dataset["images"][2]["id"]
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_binary(), headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"file://{site}/index.html#image/0/2")
        wait_ready(page)
        before = None
        for model in [m["name"] for m in dataset["models"]]:
            choose(page, "model", model)
            for threshold in (10, 50):
                choose(page, "threshold", threshold)
                selection = page.evaluate("() => encoderlens.state.selection")
                table = pd.read_parquet(demo_run / "results" / dataset["name"] / model / "frozen" /
                                        "alignment.parquet")
                assert shown_scores(page, "frozen") == expected_scores(table, image_id, selection)
            after = canvas_pixels(page, "frozen")
            assert before is None or after.shape != before.shape or (after != before).any(), model
            before = after
        page.screenshot(path=str(tmp_path / "demo_dashboard.png"), full_page=True)
        browser.close()
    assert not errors, errors


def test_dashboard_takes_the_statistics_and_caption_tables_when_their_rules_exist(workflow_copy):
    from conftest import snakemake

    # stand-ins for the statistics and caption stages' rules where those stages have not landed: only
    # their output patterns matter here
    probes = ""
    for name, pattern in [("stats", "results/stats/{dataset}/alignment_summary.parquet"),
                          ("captions", "results/{dataset}/captions/distributions.parquet")]:
        concrete = pattern.format(dataset="demo_churches" if name == "stats" else "demo_captions")
        if snakemake(workflow_copy, "--dry-run", "--cores", "1", concrete, timeout=120).returncode != 0:
            probes += f'rule probe_{name}:\n    output: "{pattern}"\n    shell: "touch {{output}}"\n\n'
    (workflow_copy / "rules" / "dashboard_probe.smk").write_text(probes or "\n")
    snakefile = workflow_copy / "Snakefile"
    snakefile.write_text(snakefile.read_text() + '\ninclude: "rules/dashboard_probe.smk"\n')
    result = snakemake(workflow_copy, "--dry-run", "--cores", "2", "results/dashboard", timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    plan = result.stdout
    assert "results/stats/demo_churches/alignment_summary.parquet" in plan
    assert "results/demo_captions/captions/distributions.parquet" in plan
    assert "results/stats/demo_streets" not in plan  # only annotated datasets have a summary

    if probes.count("rule ") == 2:  # without those rules the dashboard plans without them
        snakefile.write_text(snakefile.read_text().replace('include: "rules/dashboard_probe.smk"\n', ""))
        result = snakemake(workflow_copy, "--dry-run", "--cores", "2", "results/dashboard", timeout=120)
        assert result.returncode == 0, result.stderr[-3000:]
        assert "alignment_summary" not in result.stdout and "captions/distributions" not in result.stdout
