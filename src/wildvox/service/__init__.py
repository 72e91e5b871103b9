"""The HTTP service (``wildvox serve``): :mod:`wildvox.service.app` builds the FastAPI app
(needs the ``serve`` extra); :mod:`wildvox.service.keys` keeps its API keys."""
