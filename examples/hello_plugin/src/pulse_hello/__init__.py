"""pulse-hello: a minimal Pulse plugin, the worked example of docs/writing-plugins.md."""
