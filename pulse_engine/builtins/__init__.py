"""The engine's own features, each a small plugin registered like any third-party one."""
