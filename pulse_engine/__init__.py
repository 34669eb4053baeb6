"""Pulse engine: the Quart host that discovers pluggy plugins.

This package's namespace is the public plugin API (:mod:`pulse_engine.api`, documented in
``docs/plugin-api.md``): plugins import from ``pulse_engine`` and nothing deeper.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("pulse-engine")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

from pulse_engine.api import *  # noqa: E402,F403  (the public plugin API)
from pulse_engine.api import __all__ as _api_names  # noqa: E402

__all__ = ["__version__", *_api_names]
