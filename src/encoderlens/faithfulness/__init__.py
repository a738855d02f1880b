"""Faithfulness of attribution maps: deletion and insertion curves (curves), per attention file (job), statistics (stats)."""
