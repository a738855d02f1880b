"""Model registry and one adapter per family."""
