"""The pulse-ai-validation plugin: its hook implementations."""

from __future__ import annotations
