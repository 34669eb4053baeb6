"""The baseline: a plain Quart app with one trivial JSON route, nothing else."""

from quart import Quart

app = Quart("plain")


@app.get("/api/v1/plain")
async def plain() -> dict[str, object]:
    """A constant JSON document about the size of a small metric answer."""
    return {"metric": "deployment_frequency", "value": 42, "unit": "count", "sample_size": 42}
