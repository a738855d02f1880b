"""Batched feature and attention extraction into HDF5."""
