"""Frame-level backbones; importing this package registers every one in ``BACKBONES``.

Contract (see STYLE.md): ``Backbone(feat_dim: int, <keyword options>)``;
``forward(feats (B, T, F), lengths (B,) | None) -> (B, out_channels, T')``; ``out_channels``;
``output_lengths(lengths) -> lengths'``.

To add a backbone, create its module here and append its name to ``BACKBONE_MODULES`` (one
line). The list is fixed in code, never read from a config. A listed module whose own
third-party dependency is missing is skipped with a warning (its name then stays out of the
registry, whose KeyError lists what is available); a listed module that does not exist, or that
fails for any other reason, raises.
"""

from __future__ import annotations

import importlib
import logging

logger = logging.getLogger(__name__)

BACKBONE_MODULES: tuple[str, ...] = (
    "resnet_se",
    "ecapa_tdnn",
    "las_mha",
    "efficientnet_v2",
)


def _import_backbones() -> None:
    for name in BACKBONE_MODULES:
        module = f"{__name__}.{name}"
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name is None or err.name == module or err.name.startswith("wildvox"):
                raise
            logger.warning("backbone module %s skipped: needs %s (%s)", module, err.name, err)


_import_backbones()
