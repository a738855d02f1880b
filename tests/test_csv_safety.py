"""CSV outputs are safe to open in a spreadsheet (issue #21 item 10): a text cell that a spreadsheet
would run as a formula gets a quote prefix; numbers, negative ones included, are written as they are.
Before the fix `=HYPERLINK(...)` from a file name reached skipped.csv and the figures' CSVs verbatim."""

import csv
import json

import numpy as np
import pandas as pd

from encoderlens.data.manifest import write_manifest_outputs
from encoderlens.data.synthetic_churches import write_synthetic_churches
from encoderlens.data.wikichurches import read_wikichurches
from encoderlens.report.figures import Plot, new_figure, save_plot
from encoderlens.tables import spreadsheet_safe, write_table

HOSTILE = '=2+5+cmd|" calc"!A0.jpg'  # a DDE payload as a file name


def rows_of(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def test_text_cells_that_start_a_formula_are_quoted_and_numbers_are_not():
    frame = pd.DataFrame({
        "text": ["=1+1", "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)", "\tx", "\rx", "-1.5", "-inf",
                 "1e-3", "plain", "a=b", "", None],
        "number": [-1.5, -2.0, 3.0, np.nan, 0.0, 1.0, -7.25, -1e-9, 2.0, 5.0, 6.0, 7.0, 8.0],
        "count": np.arange(-6, 7),
    })
    safe = spreadsheet_safe(frame)
    assert safe["text"].tolist()[:-1] == [
        "'=1+1", "'+1+cmd|' /C calc'!A0", "'-2+3", "'@SUM(A1:A9)", "'\tx", "'\rx", "-1.5", "-inf",
        "1e-3", "plain", "a=b", ""]
    assert pd.isna(safe["text"].iloc[-1]) and safe["text"].dtype == frame["text"].dtype
    pd.testing.assert_series_equal(safe["number"], frame["number"])
    pd.testing.assert_series_equal(safe["count"], frame["count"])
    assert frame["text"].iloc[0] == "=1+1"  # the caller's frame is left alone


def test_skipped_csv_quotes_a_hostile_file_name(tmp_path):
    root = tmp_path / "churches"
    write_synthetic_churches(root, n_images=6, seed=0, n_annotated=3)
    image_meta = json.loads((root / "image_meta.json").read_text())
    image_meta[HOSTILE] = {}  # listed, but no such image (nor church)
    (root / "image_meta.json").write_text(json.dumps(image_meta))
    result = read_wikichurches(root)
    write_manifest_outputs(result, tmp_path / "manifest.parquet", tmp_path / "annotations.parquet",
                           tmp_path / "skipped.csv")
    header, *rows = rows_of(tmp_path / "skipped.csv")
    assert header == ["file", "row", "reason"]
    hostile = [row for row in rows if HOSTILE in row[1]]
    assert len(hostile) == 1 and hostile[0][1] == "'" + HOSTILE
    assert hostile[0][0].startswith(str(root))  # the file column is a path under the folder: no formula
    assert pd.read_parquet(tmp_path / "manifest.parquet")["image_id"].str.startswith("=").sum() == 0


def test_a_figures_numbers_keep_their_sign_and_its_labels_are_quoted(tmp_path):
    data = pd.DataFrame({"model": ["=cmd()", "tiny_clip"], "layer": [-1, 3], "delta_iou": [-1.5, 0.25]})
    figure = new_figure(2, 2)
    figure.add_subplot().plot([0, 1], [0, 1])
    save_plot(Plot(figure, data, "caption"), tmp_path / "f.png", tmp_path / "f.svg", data=tmp_path / "f.csv")
    assert rows_of(tmp_path / "f.csv") == [["model", "layer", "delta_iou"], ["'=cmd()", "-1", "-1.5"],
                                           ["tiny_clip", "3", "0.25"]]
    write_table(data, tmp_path / "f.parquet")  # parquet is data, not a spreadsheet: as it was
    assert pd.read_parquet(tmp_path / "f.parquet")["model"].tolist() == ["=cmd()", "tiny_clip"]
