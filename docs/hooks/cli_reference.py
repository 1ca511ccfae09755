"""MkDocs hook: the command-line reference page is the argparse help of every sub-command, generated at
build time, so it cannot fall behind the code."""

import contextlib
import io

from noiseadaptor.cli import COMMANDS, main

MARKER = "<!-- cli-reference -->"


def _help(argv: list[str]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        main([*argv, "--help"])
    return out.getvalue()


def on_page_markdown(markdown: str, page, config, files) -> str:
    if MARKER not in markdown:
        return markdown
    sections = [f"## `noiseadaptor`\n\n```text\n{_help([])}```\n"]
    for command in COMMANDS:  # every sub-command, in the order the command line lists them
        sections.append(f"## `noiseadaptor {command}`\n\n```text\n{_help([command])}```\n")
    return markdown.replace(MARKER, "\n".join(sections))
