"""Built-in plugin: ``GET /``, a small page for whoever opens the address ``pulse serve``
prints: links to the API docs and health, and the installed plugins with their status."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from quart import Blueprint, current_app, render_template_string

from pulse_engine import __version__, hookimpl
from pulse_engine.auth import public
from pulse_engine.builtins.health_routes import HEALTH_PATH
from pulse_engine.openapi import html_page

if TYPE_CHECKING:
    from pulse_engine.app import PulseEngine

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Pulse</title>
<style>
body { font: 16px/1.5 system-ui, sans-serif; max-width: 48rem; margin: 2rem auto; padding: 0 1rem; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .25rem .75rem .25rem 0; border-bottom: 1px solid #ddd; }
.failed { color: #b00020; font-weight: bold; }
</style>
</head>
<body>
<h1>Pulse {{ version }}</h1>
<p>Engineering analytics API. Log in with <code>POST {{ api_prefix }}/auth/login</code>,
then send <code>Authorization: Bearer &lt;access_token&gt;</code>.</p>
<ul>
{% for label, href in links %}<li><a href="{{ href }}">{{ label }}</a></li>
{% endfor %}</ul>
<h2>Plugins</h2>
<table>
<tr><th>Plugin</th><th>Version</th><th>Status</th><th>Health</th></tr>
{% for plugin in plugins %}<tr>
<td>{{ plugin.name }}{% if plugin.builtin %} <small>(built in)</small>{% endif %}</td>
<td>{{ plugin.version or "" }}</td>
<td class="{{ plugin.status }}">{{ plugin.status }}</td>
<td><a href="{{ plugin.health_href }}">{{ health_path }}/{{ plugin.name }}</a></td>
</tr>
{% endfor %}</table>
</body>
</html>
"""


@hookimpl
def register_routes(engine: PulseEngine) -> Blueprint:
    """The landing page."""
    blueprint = Blueprint("landing", __name__)

    @blueprint.get("/")
    @public
    @html_page
    async def landing() -> str:
        """A page with links to the API docs, health and every installed plugin."""
        schema = current_app.extensions["QUART_SCHEMA"]
        links = [
            ("API documentation (Swagger UI)", schema.swagger_ui_path),
            ("API documentation (ReDoc)", schema.redoc_ui_path),
            ("OpenAPI document", schema.openapi_path),
            ("Health", HEALTH_PATH),
        ]
        plugins: list[dict[str, Any]] = [
            {
                "name": record.name,
                "version": record.version,
                "status": record.status,
                "builtin": record.builtin,
                "health_href": f"{HEALTH_PATH}/{quote(record.name, safe='')}",
            }
            for record in sorted(
                engine.plugins.records.values(), key=lambda record: (record.builtin, record.name)
            )
        ]
        return await render_template_string(
            PAGE,
            version=__version__,
            api_prefix=engine.settings.api_v1_prefix,
            links=[(label, href) for label, href in links if href is not None],
            plugins=plugins,
            health_path=HEALTH_PATH,
        )

    return blueprint
