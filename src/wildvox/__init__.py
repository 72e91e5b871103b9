"""wildvox: speaker identification and verification in the wild.

``wildvox.load_model()`` returns the shipped model (no network); see :mod:`wildvox.api`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from wildvox.api import SpeakerModel


def load_model(path: Any = None, **kwargs: Any) -> SpeakerModel:
    """Load a speaker model (default: the shipped one); see :func:`wildvox.api.load_model`."""
    from wildvox.api import load_model as _load

    return _load(path, **kwargs)
