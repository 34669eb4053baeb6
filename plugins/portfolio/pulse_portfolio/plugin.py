"""The pulse-portfolio plugin: its hook implementations."""

from __future__ import annotations
