"""pulse-ai-validation: a parse-level safety gate for AI-generated SQL."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("pulse-ai-validation")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

#: The plugin's name (its entry point in the ``pulse_engine`` group).
PLUGIN_NAME = "ai_validation"

__all__ = ["PLUGIN_NAME", "__version__"]
