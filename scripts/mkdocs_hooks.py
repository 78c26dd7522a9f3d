"""MkDocs hooks of the documentation site (``hooks:`` in mkdocs.yml), run at build time.

A page line ``<!-- fer-help: fer_pipeline.commands.predict -->`` becomes that command's ``--help``
(its module's ``build_parser()``, each subcommand's too), so the reference lists today's options.
Snippets (``--8<--``) are read from the project root (mkdocs.yml's folder), wherever mkdocs runs.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
from pathlib import Path

_MARKER = re.compile(r"^<!-- fer-help: ([\w.]+) -->$", re.MULTILINE)


def command_help(module: str) -> str:
    """The ``--help`` of ``module``'s parser and of each of its subcommands, as a text block."""
    os.environ["COLUMNS"] = "100"  # argparse wraps to the terminal's width: the same on every machine
    parser = importlib.import_module(module).build_parser()
    texts = [parser.format_help()]
    for action in parser._actions:  # argparse has no public way to reach its subcommands
        if isinstance(action, argparse._SubParsersAction):
            texts += [sub.format_help() for sub in action.choices.values()]
    return "```text\n" + "\n".join(text.rstrip() for text in texts) + "\n```"


def on_page_markdown(markdown: str, **_: object) -> str:
    return _MARKER.sub(lambda match: command_help(match.group(1)), markdown)


def on_config(config, **_: object):
    """pymdownx.snippets reads ``base_path`` from the working directory; from mkdocs.yml's folder
    instead, as MkDocs reads ``docs_dir``, so that `mkdocs build -f path/to/mkdocs.yml` works
    from anywhere."""
    root = Path(config.config_file_path).parent
    snippets = config.mdx_configs.get("pymdownx.snippets")
    if snippets is not None:
        bases = snippets.get("base_path", ["."])
        snippets["base_path"] = [str(root / base) for base in ([bases] if isinstance(bases, str) else bases)]
    return config
