"""The pulse-github plugin: its hook implementations."""

from __future__ import annotations
