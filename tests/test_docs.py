"""The README stays a five-minute read, and the documentation site's navigation points at
pages that exist. `make test` builds the site itself (`mkdocs build --strict`), which checks
links, anchors and the API reference; these tests only read files."""

import ast
import pathlib
import re

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def nav_pages() -> list[str]:
    """The pages listed in mkdocs.yml's `nav`, relative to docs/."""

    def pages(entry):
        if isinstance(entry, str):
            return [entry]
        if isinstance(entry, list):
            return [page for item in entry for page in pages(item)]
        return [page for value in entry.values() for page in pages(value)]

    return pages(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"])


def test_readme_is_short_and_shows_the_two_set_up_commands():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    assert re.search(r"^make demo\b", readme, flags=re.MULTILINE)
    assert re.search(r"^make test\b", readme, flags=re.MULTILINE)


def test_every_page_in_the_nav_exists():
    pages = nav_pages()
    assert "index.md" in pages
    assert any(page.startswith("guides/") for page in pages)
    missing = [page for page in pages if not (DOCS / page).is_file()]
    assert not missing, f"mkdocs.yml's nav lists pages that do not exist: {missing}"


def test_every_guide_is_in_the_nav():
    listed = set(nav_pages())
    guides = {str(path.relative_to(DOCS)) for path in (DOCS / "guides").glob("*.md")}
    assert guides <= listed, f"guides missing from mkdocs.yml's nav: {sorted(guides - listed)}"


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives a Markdown file's headings: lower case, punctuation dropped,
    each space a hyphen."""
    headings = re.findall(r"^#+ (.+)$", markdown, flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def test_readme_links_to_files_and_headings_that_exist():
    readme = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)\s]+)\)", readme)
    targets += re.findall(r"^\[[^\]]+\]: (\S+)$", readme, flags=re.MULTILINE)
    relative = [target for target in targets if not re.match(r"[a-z]+:", target)]
    assert relative, "the README links to the guides"
    for target in relative:
        path, _, anchor = target.partition("#")
        assert (ROOT / path).exists(), f"README links to a missing file: {target}"
        if anchor:
            assert anchor in github_anchors((ROOT / path).read_text()), (
                f"README links to a heading that {path} does not have: {target}"
            )


def test_the_api_reference_lists_every_public_name():
    """`docs/api/tfprune.md` documents each name of `tfprune.__all__` (read from the source,
    so that TensorFlow is not imported)."""
    tree = ast.parse((ROOT / "tfprune" / "__init__.py").read_text())
    exported = next(
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "__all__"
    )
    names = {element.value for element in exported.elts}
    page = (DOCS / "api" / "tfprune.md").read_text()
    documented = set(re.findall(r"^::: tfprune\.(\w+)$", page, flags=re.MULTILINE))
    assert names <= documented, f"not in docs/api/tfprune.md: {sorted(names - documented)}"
