"""The ASGI application built from the environment: ``hypercorn pulse_engine.asgi:app``."""

from pulse_engine.app import create_app

app = create_app()
