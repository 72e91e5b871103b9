"""wildvox: speaker identification and verification in the wild."""

__version__ = "0.1.0"
