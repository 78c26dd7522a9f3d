"""Write the inventory of the README as it was before the documentation site: its headings, the
lines of its fenced blocks (the commands) and its figures, one ``kind<TAB>text`` line each.
tests/test_docs_site.py finds every item in the site's pages (docs/development.md).

    python scripts/readme_inventory.py                      # b826896's README -> docs/readme_inventory.txt
    python scripts/readme_inventory.py --rev HEAD --out -   # another revision, to stdout
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from fer_pipeline.docs_inventory import format_inventory, markdown_items

ROOT = Path(__file__).resolve().parents[1]
#: the last commit whose README held everything, before it was cut down to a page of its own
LONG_README = "b826896"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rev", default=LONG_README,
                        help=f"the git revision whose README.md to list (default {LONG_README})")
    parser.add_argument("--out", default=str(ROOT / "docs" / "readme_inventory.txt"),
                        help="file to write, or - for stdout")
    args = parser.parse_args(argv)
    shown = subprocess.run(["git", "-C", str(ROOT), "show", f"{args.rev}:README.md"], capture_output=True, text=True)
    if shown.returncode:
        print(f"readme_inventory: no README.md at {args.rev}: {shown.stderr.strip()}", file=sys.stderr)
        return 2
    text = format_inventory(markdown_items(shown.stdout))
    if args.out == "-":
        sys.stdout.write(text)
    else:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"{len(text.splitlines())} items -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
