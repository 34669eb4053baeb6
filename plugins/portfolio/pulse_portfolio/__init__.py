"""pulse-portfolio: cross-project, team and executive analytics with forecasts."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("pulse-portfolio")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

#: The plugin's name (its entry point in the ``pulse_engine`` group).
PLUGIN_NAME = "portfolio"

__all__ = ["PLUGIN_NAME", "__version__"]
