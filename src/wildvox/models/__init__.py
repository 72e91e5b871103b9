"""Speaker embedding models: backbones, poolings, heads and the embedder that joins them.

Importing this package registers every backbone, pooling and head.
"""

from __future__ import annotations

from wildvox.models import backbones, pooling
from wildvox.models.embedder import Embedder, build_component, build_embedder
from wildvox.models.heads import build_head

__all__ = ["Embedder", "backbones", "build_component", "build_embedder", "build_head", "pooling"]
