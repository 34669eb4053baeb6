"""pulse-etl's own connectors (returned by its ``register_connectors`` hook)."""
