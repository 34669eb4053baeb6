"""The documentation stays true to the code: example files, settings, links."""

from __future__ import annotations

import re
from pathlib import Path

from pulse_engine.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
EXAMPLE = ROOT / "examples" / "hello_plugin"
TITLED_BLOCK = re.compile(r'^```\w+ title="([^"]+)"\n(.*?)^```$', re.MULTILINE | re.DOTALL)
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def example_sources() -> set[str]:
    """The example distribution's source files, relative to the repository root."""
    return {
        str(path.relative_to(ROOT))
        for path in EXAMPLE.rglob("*")
        if path.is_file()
        and path.suffix in {".py", ".toml"}
        and not any(
            part.startswith((".", "__pycache__", "build", "dist")) or part.endswith(".egg-info")
            for part in path.relative_to(EXAMPLE).parts
        )
    }


def test_writing_plugins_shows_the_example_files_verbatim() -> None:
    blocks = TITLED_BLOCK.findall((DOCS / "writing-plugins.md").read_text())
    shown = {path: code for path, code in blocks}
    assert len(shown) == len(blocks), "a file is shown twice"
    assert set(shown) == example_sources()
    for path, code in shown.items():
        assert code == (ROOT / path).read_text(), f"docs/writing-plugins.md differs from {path}"


def test_every_setting_is_documented() -> None:
    configuration = (DOCS / "configuration.md").read_text()
    missing = [
        field.alias
        for field in Settings.model_fields.values()
        if field.alias and f"`{field.alias}`" not in configuration
    ]
    assert not missing, f"docs/configuration.md does not document {missing}"


def test_relative_links_resolve() -> None:
    broken = [
        f"{page.name}: {target}"
        for page in DOCS.glob("*.md")
        for target in LINK.findall(page.read_text())
        if "://" not in target and not (page.parent / target).exists()
    ]
    assert not broken, broken


def test_index_links_every_page() -> None:
    linked = set(LINK.findall((DOCS / "index.md").read_text()))
    pages = {page.name for page in DOCS.glob("*.md")} - {"index.md"}
    assert pages <= linked, f"docs/index.md does not link {sorted(pages - linked)}"


def test_every_public_api_name_is_documented() -> None:
    """Each name of ``pulse_engine.__all__`` has a ``### `name` `` section in
    docs/plugin-api.md, and each section names something exported (Datasette's
    ``@documented`` check)."""
    import pulse_engine
    from pulse_engine import api

    page = (ROOT / "docs" / "plugin-api.md").read_text()
    documented = set(re.findall(r"^### `([A-Za-z_][A-Za-z0-9_]*)`$", page, re.MULTILINE))
    exported = set(api.__all__)
    assert exported - documented == set(), "exported but not documented"
    assert documented - exported == set(), "documented but not exported"
    assert set(pulse_engine.__all__) == exported | {"__version__"}
    for name in exported:
        assert getattr(pulse_engine, name) is getattr(api, name)
