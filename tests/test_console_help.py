"""The installed console script as a newcomer meets it, first: `ptychoflow`, `ptychoflow --help`
and every command's `--help` exit 0 without a traceback (.ci/run runs this file before
anything else, so a broken entry point fails CI in its first minute)."""

from __future__ import annotations

from cli_help import all_examples, help_pages
from console_script import needs_console_script, ptychoflow
from ptychoflow.cli.main import SUBCOMMANDS

pytestmark = needs_console_script


def test_bare_ptychoflow_prints_the_help_and_exits_0():
    result = ptychoflow()
    assert result.stdout.startswith("Usage: ptychoflow") and "Quick start" in result.stdout
    assert "Traceback" not in result.stderr


def test_every_help_page_exits_0_and_lists_every_command():
    pages = help_pages()  # each `ptychoflow ... --help` is run with check=True: exit 0 or the test fails
    root = pages[0]
    assert root.command == () and set(root.subcommands) == set(SUBCOMMANDS)
    assert len(pages) > len(SUBCOMMANDS)  # the groups' subcommands were reached too
    for page in pages:
        assert page.text.startswith(f"Usage: {page.name}"), page.name
        assert "Traceback" not in page.text


def test_a_bare_command_group_prints_its_help_and_exits_0():
    groups = [page for page in help_pages() if page.command and page.subcommands and page.command != ("watch",)]
    assert len(groups) >= 7
    for group in groups:  # `ptychoflow watch` alone runs the watcher: it is a command with subcommands
        result = ptychoflow(*group.command)
        assert result.stdout.startswith(f"Usage: {group.name}") and "Commands:" in result.stdout, group.name


def test_every_command_page_teaches_by_example():
    """Each command (not only each group) shows at least one example, or its group's page does."""
    pages = {page.command: page for page in help_pages()}
    bare = [page.name for command, page in pages.items()
            if command and not page.subcommands and not page.examples and not pages[command[:-1]].examples]
    assert not bare, f"help pages without an example: {bare}"
    assert len(all_examples()) >= len(SUBCOMMANDS)
