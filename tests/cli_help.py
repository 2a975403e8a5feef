"""Every ``--help`` page of the installed console script, and the examples printed in them.

The command tree is discovered the way a user discovers it: from the ``Commands:`` section
of each help page, starting at ``ptychoflow --help``. An example is any line of a page's
description (above ``Options:``) that runs ``ptychoflow``, optionally after environment
assignments (``PTYCHOFLOW_CLIENT_ID=... ptychoflow login``) or as another user (``sudo -u
...``), with its continuation lines (ending in a backslash); it is run as printed, by bash.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from console_script import ptychoflow

EXAMPLE = re.compile(r"^\s+((?:[A-Z_][A-Z0-9_]*=\S*\s+|sudo\s.*?)*ptychoflow(?:\s.*)?)$")


@dataclass(frozen=True)
class HelpPage:
    command: tuple[str, ...]  # () for the root
    text: str

    @property
    def name(self) -> str:
        return " ".join(("ptychoflow", *self.command))

    @property
    def description(self) -> str:
        """The page above its option and command lists (the usage line excluded)."""
        body = self.text.split("\n", 1)[1] if self.text.startswith("Usage:") else self.text
        return re.split(r"^(?:Options|Commands):\s*$", body, maxsplit=1, flags=re.M)[0]

    @property
    def subcommands(self) -> list[str]:
        if "\nCommands:\n" not in self.text:
            return []
        listing = self.text.split("\nCommands:\n", 1)[1]
        return [line.split()[0] for line in listing.splitlines() if line.startswith("  ") and line.split()]

    @property
    def examples(self) -> list[str]:
        joined = re.sub(r"\s*\\\n\s*", " ", self.description)  # continuation lines, joined as bash joins them
        return [match.group(1).strip() for line in joined.splitlines() if (match := EXAMPLE.match(line))]


@cache
def help_pages() -> tuple[HelpPage, ...]:
    """Every page, root first, depth first, as `ptychoflow ... --help` prints it."""
    pages: list[HelpPage] = []

    def visit(command: tuple[str, ...]) -> None:
        page = HelpPage(command, ptychoflow(*command, "--help", env={"COLUMNS": "200", **_env()}).stdout)
        pages.append(page)
        for name in page.subcommands:
            visit((*command, name))

    visit(())
    return tuple(pages)


def _env() -> dict[str, str]:
    from console_script import console_env

    return console_env()


def all_examples() -> list[tuple[str, str]]:
    """(help page, example) for every example of every page, in page order."""
    return [(page.name, example) for page in help_pages() for example in page.examples]
