"""The preflight step: a short table before a long run; it fails only on what would certainly fail."""

from __future__ import annotations

import pytest

from conftest import snakemake
from encoderlens.preflight import GB, PreflightError, format_table, preflight, run_checks

SECONDS = {"gpu": 0.05, "cpu": 0.5}


def plan(images=50_000, device="auto", hub_id="geolocal/StreetCLIP", all_layers=False):
    return {
        "root": ".",
        "datasets": {"osv5m": {"images": images, "source": "download", "format": "osv5m",
                               "models": ["big"], "passes": {"big": 2}}},
        "models": {"big": {"source": "hub", "hub_id": hub_id, "family": "clip", "device": device,
                           "all_layers": all_layers, "folder": "resources/models/big"}},
        "seconds_per_image": SECONDS,
    }


def by_name(checks):
    return {check.name: check for check in checks}


def no_gpu():
    return None


def test_large_cpu_run_warns_with_the_projected_time(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    checks = by_name(run_checks(plan(), environ={}, free_bytes=100 * GB, accelerator=no_gpu))
    # 50,000 images x 2 passes x 0.5 s x 11 (ViT-L/14-336 vs ViT-B/16 FLOPs) = 152.8 h; GPU 0.05 s: 1.4 h
    assert checks["GPU"].status == "warn"
    assert checks["GPU"].note == ("device: auto falls back to the CPU, about 110x slower: extraction ≈ 152.8 h "
                                  "on the CPU (≈ 1.4 h on a GPU)")
    assert checks["download big"].note == "≈ 1.6 GB"  # 428 M parameters x 4 bytes
    # downloads 1.712e9 B + 50,000 x 200 KiB; outputs 2 x 50,000 x 16 KiB: 13.59e9 B = 12.66 GiB
    assert checks["disk"].value == "≈ 12.7 GB needed, 100.0 GB free" and checks["disk"].status == "ok"
    assert "HF_TOKEN" not in checks
    assert by_name(run_checks(plan(), environ={}, free_bytes=100 * GB, accelerator=lambda: "cuda"))["GPU"].status == "ok"


def test_small_runs_do_not_look_for_a_gpu(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def forbidden():
        raise AssertionError("the accelerator check (a torch import) ran for a small dataset")

    checks = by_name(run_checks(plan(images=100), environ={}, free_bytes=100 * GB, accelerator=forbidden))
    assert "GPU" not in checks
    with pytest.raises(PreflightError, match="big pinned to cuda"):
        preflight(plan(images=100, device="cuda"), environ={}, free_bytes=100 * GB, accelerator=no_gpu)


def test_gated_model_without_a_token_fails_and_a_downloaded_one_passes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("encoderlens.preflight.hub_token",
                        lambda environ: environ.get("HF_TOKEN"))  # no token stored by `hf auth login`
    gated = plan(images=10, hub_id="facebook/dinov3-vitb16-pretrain-lvd1689m")
    with pytest.raises(PreflightError, match=r"HF_TOKEN: missing \(gated: big"):
        preflight(gated, tmp_path / "preflight.txt", environ={}, free_bytes=100 * GB, accelerator=no_gpu)
    assert not (tmp_path / "preflight.txt").exists()
    checks = preflight(gated, tmp_path / "preflight.txt", environ={"HF_TOKEN": "hf_x"}, free_bytes=100 * GB,
                       accelerator=no_gpu)
    assert by_name(checks)["HF_TOKEN"].status == "ok"
    assert "hf_x" not in (tmp_path / "preflight.txt").read_text()
    (tmp_path / "resources" / "models" / "big").mkdir(parents=True)  # already downloaded: no token needed
    assert "HF_TOKEN" not in by_name(run_checks(gated, environ={}, free_bytes=100 * GB, accelerator=no_gpu))


def test_disk_fails_only_when_the_downloads_cannot_fit(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status = lambda free: by_name(run_checks(plan(), environ={}, free_bytes=free, accelerator=no_gpu))["disk"]  # noqa: E731
    assert status(12 * GB).status == "warn" and status(12 * GB).note == "the outputs may not fit"
    assert status(5 * GB).status == "fail"
    table = format_table(run_checks(plan(), environ={}, free_bytes=5 * GB, accelerator=no_gpu)).splitlines()
    assert table[0].split() == ["check", "value", "status", "note"] and len(table) == 5


def test_until_preflight_runs_it_alone_and_first(workflow_copy):
    result = snakemake(workflow_copy, "--dry-run", "--cores", "1", "--until", "preflight", timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    counts = [line.split() for line in result.stdout.splitlines() if line.strip().startswith(("preflight", "total"))]
    assert ["preflight", "1"] in counts and ["total", "1"] in counts
    # with work beside it that could start at once, it still runs first and alone
    result = snakemake(workflow_copy, "--cores", "2", "results/preflight.txt", "resources/datasets/demo_streets",
                       "resources/datasets/demo_captions", timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    events = [line.split()[0] + " " + line.split()[-1].rstrip(":)") for line in result.stderr.splitlines()
              if line.startswith(("localrule ", "rule ", "Finished jobid"))]
    assert events[:2] == ["localrule preflight", "Finished preflight"], events
    assert "check" in result.stdout and "disk" in result.stdout  # the table, on the terminal
    log = (workflow_copy / "logs" / "preflight.log").read_text().splitlines()
    assert log[-1].startswith("done: wrote results/preflight.txt (")


def test_gradient_maps_scale_the_projected_time_not_the_disk(tmp_path, monkeypatch):
    """A model extracting Chefer and IG maps costs 1 + 1.2 + 2.2 x 8 steps = 19.8 forward passes per image."""
    from encoderlens.attention.methods import extraction_cost

    forwards = extraction_cost("clip", {"map_methods": ["cls", "chefer", "ig"], "ig": {"steps": 8}})
    assert forwards == pytest.approx(1 + 1.2 + 2.2 * 8)
    assert extraction_cost("clip", {"map_methods": None}) == 1.0  # cls and rollout ride on the forward
    assert extraction_cost("resnet", {"map_methods": None}) == pytest.approx(2.7)  # Grad-CAM by default
    monkeypatch.chdir(tmp_path)
    heavy = plan()
    heavy["datasets"]["osv5m"]["forwards"] = {"big": forwards}
    checks = by_name(run_checks(heavy, environ={}, free_bytes=100 * GB, accelerator=no_gpu))
    # 152.8 h x 19.8 = 3025 h on the CPU; 1.4 h x 19.8 = 27.5 h on a GPU; the disk as without the maps
    assert checks["GPU"].note.endswith("extraction ≈ 3,025.0 h on the CPU (≈ 27.5 h on a GPU)")
    assert checks["disk"].value == "≈ 12.7 GB needed, 100.0 GB free"
