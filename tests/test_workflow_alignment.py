"""End to end: the alignment rule's tables (compiled kernel, batched images) equal the per-image NumPy
reference recomputed from the demo run's own attention.h5 and annotations."""

import numpy as np
import pandas as pd
import pytest
import yaml

from test_alignment_kernel import per_image_reference

from encoderlens.alignment.job import COLUMNS, FEATURE_COLUMNS

pytestmark = pytest.mark.e2e


def test_alignment_tables_equal_the_numpy_reference(demo_run):
    config = yaml.safe_load((demo_run / "config.yaml").read_text())
    settings = config["alignment"]
    dataset = "demo_churches"
    annotations = pd.read_parquet(demo_run / "results" / dataset / "annotations.parquet")
    model = config["datasets"][dataset]["models"][0]
    folder = demo_run / "results" / dataset / model / "frozen"
    got = pd.read_parquet(folder / "alignment.parquet")
    got_features = pd.read_parquet(folder / "alignment_features.parquet")
    thresholds = settings.get("thresholds", [10, 15, 20, 25, 30, 40, 50])
    want, want_features = per_image_reference(folder / "attention.h5", annotations, model, "frozen",
                                              thresholds, settings["pointing_tolerance"],
                                              settings["analysis_size"])
    for table, reference, columns in ((got, want, COLUMNS), (got_features, want_features, FEATURE_COLUMNS)):
        assert len(table) == len(reference) > 0
        pd.testing.assert_frame_equal(table.reset_index(drop=True), reference[columns], check_dtype=False)
    assert np.isfinite(got["iou"]).all()
