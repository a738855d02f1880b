"""encoderlens: what vision encoders know and where they look."""

__version__ = "0.1.0"
