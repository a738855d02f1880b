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


def test_demo_logs_are_never_empty_and_end_with_what_the_job_did(demo_run):
    logs = sorted((demo_run / "logs").rglob("*.log"))
    assert len(logs) > 40
    for path in logs:
        lines = path.read_text(encoding="utf-8").splitlines()
        assert lines, f"{path} is empty"
        assert lines[-1].startswith("done: ") and lines[-1].endswith(" s"), (path, lines[-1])
        text = "\n".join(lines)
        # noise that carried no information: the unused text tower's load report, progress bars
        assert "LOAD REPORT" not in text and "Loading weights" not in text, path
    extraction = (demo_run / "logs" / "extract" / "demo_churches" / "tiny_clip" / "frozen.log").read_text()
    assert "attention.h5 (" in extraction.splitlines()[-1] and " images, " in extraction.splitlines()[-1]


def test_another_config_after_the_demo_keeps_the_demo_pages(demo_run, tmp_path):
    """A run of another config (here: the street-view dataset alone) rebuilds the dashboard; the demo's
    other datasets, still under results/, keep their pages."""
    import yaml

    from conftest import clone_run, snakemake

    run = clone_run(demo_run, tmp_path / "run")
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["datasets"] = {"demo_streets": config["datasets"]["demo_streets"]}
    (run / "streets.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(run, "results/dashboard", "--cores", "2", "--configfile", "streets.yaml", timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (index,) = registered(run / "results" / "dashboard" / "data" / "index.js")
    assert [(d["name"], d["earlier"]) for d in index["datasets"]] == [("demo_churches", True)]
    assert [(g["dataset"], g["earlier"]) for g in index["geo"]] == [("demo_streets", False)]
    assert [(c["dataset"], c["earlier"]) for c in index["captions"]] == [("demo_captions", True)]
    (before,) = registered(demo_run / "results" / "dashboard" / "data" / "index.js")
    assert [i["id"] for i in index["datasets"][0]["images"]] == [i["id"] for i in before["datasets"][0]["images"]]
    assert "earlier runs" in (run / "logs" / "dashboard.log").read_text()
