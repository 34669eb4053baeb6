"""Pulse engine: the Quart host that discovers pluggy plugins.

Plugin authors need only ``from pulse_engine import hookimpl``.
"""

from importlib.metadata import PackageNotFoundError, version

from pulse_engine.hookspecs import hookimpl

try:
    __version__ = version("pulse-engine")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["__version__", "hookimpl"]
