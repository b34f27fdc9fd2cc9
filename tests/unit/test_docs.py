"""The documentation stays true: the settings reference is generated from the code, and every link resolves."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from cli.main import main
from core.settings import SETTINGS_DOC_COMMAND, Settings, settings_markdown

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def test_the_settings_reference_is_generated_from_the_settings_class():
    written = (REPO_ROOT / "docs" / "settings.md").read_text()
    assert written == settings_markdown(), f"docs/settings.md is stale: run `{SETTINGS_DOC_COMMAND}`"


def test_every_setting_is_documented_with_its_environment_variable():
    text = settings_markdown()
    for name, field in Settings.model_fields.items():
        assert field.description, f"Settings.{name} has no description"
        assert f"| `WLOPS_{name.upper()}` | `{name}` |" in text


def test_the_command_prints_and_writes_the_reference(tmp_path, capsys):
    main(["settings-doc"])
    assert capsys.readouterr().out == settings_markdown()
    main(["settings-doc", "--write", str(tmp_path / "settings.md")])
    assert (tmp_path / "settings.md").read_text() == settings_markdown()


def test_the_readme_is_a_front_door():
    readme = (REPO_ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    assert "make demo" in readme and "make test" in readme


def _layers_in(document: Path) -> list[set[str]]:
    """The packages of each numbered layer of a document's map: rows like `| 3 | `api/`, `serving/` | ... |`."""
    layers: dict[int, set[str]] = {}
    for number, packages in re.findall(r"^\| (\d+) \| ([^|]+) \|", document.read_text(), flags=re.MULTILINE):
        layers.setdefault(int(number), set()).update(re.findall(r"`(\w+)/`", packages))
    return [layers[n] for n in sorted(layers)]


@pytest.mark.parametrize("document", ["README.md", "docs/design.md"])
def test_the_package_maps_are_the_layers_contract(document: str):
    contracts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    (layers,) = [c["layers"] for c in contracts if c["id"] == "layers"]
    assert _layers_in(REPO_ROOT / document) == [{p.strip() for p in layer.split("|")} for layer in layers]


def test_the_development_guide_names_every_import_contract():
    contracts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    guide = (REPO_ROOT / "docs" / "development.md").read_text()
    assert [c["id"] for c in contracts if f"`{c['id']}`" not in guide] == []


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#+ (.+)$", path.read_text(), flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.relative_to(REPO_ROOT).as_posix())
def test_every_relative_link_resolves(document: Path):
    broken = []
    for target in LINK.findall(document.read_text()):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        linked = (document.parent / file_part).resolve() if file_part else document
        if not linked.exists() or (anchor and linked.suffix == ".md" and anchor not in _anchors(linked)):
            broken.append(target)
    assert not broken, f"{document.name}: links to nothing: {broken}"
