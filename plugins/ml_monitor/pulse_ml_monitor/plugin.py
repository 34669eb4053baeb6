"""The pulse-ml-monitor plugin: its hook implementations."""

from __future__ import annotations
