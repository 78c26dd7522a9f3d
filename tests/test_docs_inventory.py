"""fer_pipeline.docs_inventory, and what it is for: every heading, command and figure of the README
as it was before the documentation site (docs/readme_inventory.txt) is still in the site's pages."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from fer_pipeline.docs_inventory import (
    expand_snippets,
    format_inventory,
    markdown_items,
    missing,
    read_inventory,
    site_items,
)

REPO = Path(__file__).resolve().parents[1]

DOCUMENT = """# Title

Some text with a figure: ![curves](img/curves.png)

## A `section`

```bash
kedro run   --env cpu      # a command
# a comment, not a heading
```

  ```yaml
  key: value
  ```
"""


def test_headings_fenced_lines_and_figures_are_listed_in_order():
    assert markdown_items(DOCUMENT, PurePosixPath("docs")) == [
        ("heading", "Title"), ("image", "docs/img/curves.png"), ("heading", "A `section`"),
        ("code", "kedro run --env cpu # a command"), ("code", "# a comment, not a heading"), ("code", "key: value")]


def test_a_figure_is_read_from_its_pages_folder():
    assert markdown_items("![x](../cpu/a.png)", PurePosixPath("docs/stages")) == [("image", "docs/cpu/a.png")]


def test_snippets_are_expanded_from_the_project_root(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "table.md").write_text("| a |\n|---|\n")
    (tmp_path / "docs" / "page.md").write_text('# Page\n\n--8<-- "docs/table.md"\nafter\n')
    assert expand_snippets((tmp_path / "docs" / "page.md").read_text(), tmp_path) == "# Page\n\n| a |\n|---|\nafter"
    assert ("heading", "Page") in site_items(tmp_path)


def test_the_inventory_round_trips_and_refuses_a_line_of_another_kind():
    items = [("heading", "Title"), ("code", "bash scripts/test.sh"), ("code", "bash scripts/test.sh")]
    assert read_inventory(format_inventory(items)) == items[:2]
    with pytest.raises(ValueError, match="inventory line 1"):
        read_inventory("command\tkedro run\n")


def test_an_item_the_pages_lost_is_missing(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text("# Two commands\n\n```bash\nbash scripts/demo.sh\n```\n")
    inventory = [("heading", "Two commands"), ("code", "bash scripts/demo.sh"), ("code", "bash scripts/test.sh"),
                 ("image", "docs/gpu/training_curves.png")]
    assert missing(inventory, site_items(tmp_path)) == inventory[2:]


def test_nothing_of_the_long_readme_is_lost():
    """Each heading, each line of a fenced block (commands, configuration, answers) and each
    figure of the README before it was cut down is in a page of docs/ (snippets expanded)."""
    inventory = read_inventory((REPO / "docs" / "readme_inventory.txt").read_text(encoding="utf-8"))
    assert {kind for kind, _ in inventory} == {"heading", "code", "image"} and len(inventory) > 150
    assert missing(inventory, site_items(REPO)) == []
    for kind, path in inventory:
        if kind == "image":
            assert (REPO / path).is_file(), path
