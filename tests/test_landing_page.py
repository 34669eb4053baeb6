"""``GET /`` (issue 10 item 7): the address ``pulse serve`` prints answers with a page.

It used to be a 404 problem document. Now it is public HTML linking to the API docs, the
OpenAPI document and health, and listing every installed plugin with its version and
status (names are escaped: a plugin's name is not trusted HTML).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from html import unescape

import pytest
from quart import Blueprint, Quart

from pulse_engine import hookimpl
from pulse_engine.settings import Settings
from pulse_engine.testing import running_app

HOSTILE_NAME = '<img src=x onerror="alert(1)">'


class BrokenRoutes:
    """A plugin whose routes fail to register, so that it is listed as failed."""

    @hookimpl
    def register_routes(self) -> Blueprint:
        raise RuntimeError("no routes today")


@pytest.fixture
async def app(pulse_settings: Settings) -> AsyncIterator[Quart]:
    """Every installed plugin, plus one failed plugin with a name that is HTML."""
    async with running_app(pulse_settings, plugins={HOSTILE_NAME: BrokenRoutes()}) as started:
        yield started


def rows(html: str) -> dict[str, list[str]]:
    """The plugin table: name -> [version, status, health link], tags stripped."""
    table: dict[str, list[str]] = {}
    for row in re.findall(r"<tr>(.*?)</tr>", html, flags=re.S):
        cells = [
            unescape(re.sub(r"<small>.*?</small>|<[^>]+>", "", cell)).strip()
            for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, flags=re.S)
        ]
        if cells:
            table[cells[0]] = cells[1:]
    return table


async def test_the_root_is_a_public_page_linking_docs_health_and_plugins(app: Quart) -> None:
    client = app.test_client()
    response = await client.get("/")
    assert response.status_code == 200
    assert response.content_type.startswith("text/html")
    html = await response.get_data(as_text=True)
    links = set(re.findall(r'href="([^"]+)"', html))
    assert {"/docs", "/redoc", "/openapi.json", "/health"} <= links
    for link in sorted(links):
        followed = await client.get(unescape(link))
        assert followed.status_code in (200, 503), (link, followed.status_code)
    records = app.extensions["pulse"].plugins.records
    listed = rows(html)
    assert set(listed) == set(records)
    for name, record in records.items():
        version, status, health = listed[name]
        assert (version, status, health) == (record.version or "", record.status, f"/health/{name}")
    assert listed["dora"][1] == "loaded" and listed["dora"][0]
    assert listed[HOSTILE_NAME][1] == "failed"


async def test_plugin_names_are_escaped(app: Quart) -> None:
    html = await (await app.test_client().get("/")).get_data(as_text=True)
    assert HOSTILE_NAME not in html
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in html


async def test_the_page_is_documented_as_html(app: Quart) -> None:
    spec = await (await app.test_client().get("/openapi.json")).get_json()
    answer = spec["paths"]["/"]["get"]["responses"]["200"]
    assert answer["content"] == {"text/html": {"schema": {"type": "string"}}}
