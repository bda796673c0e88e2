"""The documentation follows the code: the configuration reference lists every plugin key of
recbole_llm/properties/overall.yaml with the default written there, the README's links lead to
files that exist, and the README stays short."""

import glob
import os
import re

import yaml

from conftest import REPO

PROPERTIES = os.path.join(REPO, "recbole_llm", "properties")
OVERALL = os.path.join(PROPERTIES, "overall.yaml")
CONFIGURATION = os.path.join(REPO, "docs", "configuration.md")
README = os.path.join(REPO, "README.md")
MAX_README_LINES = 220

YAML_LINE = re.compile(r"^(\w+):\s*(.*?)\s*(?:#.*)?$")
TABLE_ROW = re.compile(r"^\|\s*`(\w+)`\s*\|([^|]*)\|")
LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)\s]*)?\)")


def yaml_defaults(path):
    r"""``{key: value as written}`` for the top-level keys of a properties file."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    written = {}
    for line in text.splitlines():
        match = YAML_LINE.match(line)
        if match:
            written[match.group(1)] = match.group(2)
    parsed = yaml.safe_load(text) or {}
    assert set(written) == set(parsed), f"{path}: could not read every key as written: {sorted(set(parsed) ^ set(written))}"
    return written


def table_defaults(path):
    r"""``{key: default}`` of every ``| `key` | default | meaning |`` row of a markdown page."""
    rows = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            match = TABLE_ROW.match(line)
            if match:
                key = match.group(1)
                assert key not in rows, f"{path}:{number}: `{key}` has two rows"
                rows[key] = match.group(2).strip().strip("`")
    return rows


def links(path):
    with open(path, encoding="utf-8") as f:
        return [target for target in LINK.findall(f.read()) if "://" not in target]


def test_the_configuration_reference_lists_every_key_of_overall_yaml_with_its_default():
    overall = yaml_defaults(OVERALL)
    # Keys of the plugin's model YAMLs may be listed too (layer_combination, stopping_step ...).
    model_files = {key: (path, value) for path in sorted(glob.glob(os.path.join(PROPERTIES, "model", "*.yaml")))
                   for key, value in yaml_defaults(path).items()}
    table = table_defaults(CONFIGURATION)
    missing = sorted(set(overall) - set(table))
    assert not missing, f"docs/configuration.md lacks a row for these keys of overall.yaml: {missing}"
    unknown = sorted(set(table) - set(overall) - set(model_files))
    assert not unknown, f"docs/configuration.md lists keys that no plugin properties file has: {unknown}"
    for key, default in table.items():
        source, expected = (OVERALL, overall[key]) if key in overall else model_files[key]
        assert default == expected, (
            f"docs/configuration.md says `{key}` defaults to {default!r}, "
            f"{os.path.relpath(source, REPO)} says {expected!r}"
        )


def test_every_docs_and_results_page_linked_from_the_readme_exists():
    targets = [t for t in links(README) if t.startswith(("docs/", "results/"))]
    assert targets, "the README links no docs/ or results/ page"
    absent = [t for t in targets if not os.path.isfile(os.path.join(REPO, t))]
    assert not absent, f"the README links pages that do not exist: {absent}"


def test_the_readme_links_every_docs_page_and_results_file():
    linked = {os.path.normpath(t) for t in links(README)}
    pages = sorted(os.path.relpath(p, REPO) for pattern in ("docs/*.md", "results/*.md")
                   for p in glob.glob(os.path.join(REPO, pattern)))
    unlinked = [p for p in pages if p not in linked]
    assert not unlinked, f"the README does not link these pages (one summary line each): {unlinked}"


def test_links_between_the_pages_lead_to_files_that_exist():
    for page in glob.glob(os.path.join(REPO, "docs", "*.md")) + glob.glob(os.path.join(REPO, "results", "*.md")):
        for target in links(page):
            path = os.path.normpath(os.path.join(os.path.dirname(page), target))
            assert os.path.exists(path), f"{os.path.relpath(page, REPO)} links {target}, which does not exist"


def test_the_readme_reads_in_five_minutes():
    with open(README, encoding="utf-8") as f:
        lines = f.read().splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines; keep it to {MAX_README_LINES} (details go to docs/)"
