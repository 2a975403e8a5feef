"""Every listed command is real and reachable, a broken one fails loudly, and the installed
console script (not only ``python -m``) starts."""

from __future__ import annotations

import importlib
import subprocess
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from console_script import CONSOLE_SCRIPT, console_env, needs_console_script
from ptychoflow.cli._common import PROFILE_HELP
from ptychoflow.cli.main import SUBCOMMANDS, LazyGroup, cli
from ptychoflow.errors import PtychoflowError

@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_every_listed_subcommand_module_imports_and_has_help(name):
    module_name, attr = SUBCOMMANDS[name].split(":")
    command = getattr(importlib.import_module(module_name), attr)
    assert isinstance(command, click.Command)
    result = CliRunner().invoke(cli, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: cli {name}") and command.help


def _all_commands(group: click.Group, ctx: click.Context, prefix: str = "") -> dict[str, click.Command]:
    found = {}
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        found[f"{prefix}{name}"] = command
        if isinstance(command, click.Group):
            found.update(_all_commands(command, ctx, f"{prefix}{name} "))
    return found


def test_profile_and_json_options_are_one_option_everywhere():
    commands = _all_commands(cli, click.Context(cli))
    with_profile = {}
    for path, command in commands.items():
        for param in command.params:
            if "--profile" in param.opts:
                assert param.name == "profile_path" and param.help == PROFILE_HELP, path
                assert isinstance(param.type, click.Path) and param.type.type is Path, path
                with_profile[path] = param
            if "--json" in param.opts:
                assert param.name == "as_json" and param.is_flag, path
    # every command that reads a profile takes --profile (a sample across the modules)
    assert {"runs list", "flows run", "models list", "train", "watch", "watch status", "edge serve", "dashboard",
            "login", "endpoints status", "engine serve", "functions register"} <= set(with_profile)


def test_a_listed_module_that_does_not_exist_fails_loudly():
    group = LazyGroup(name="demo-cli", lazy={"ghost": "ptychoflow.cli.ghost:ghost", "init": SUBCOMMANDS["init"]})
    for args in (["--help"], ["ghost", "--help"]):
        result = CliRunner().invoke(group, args)
        assert result.exit_code != 0 and isinstance(result.exception, PtychoflowError)
        assert "command 'ghost' is broken: cannot load ptychoflow.cli.ghost:ghost" in str(result.exception)
    wrong_attribute = LazyGroup(name="demo-cli", lazy={"init": "ptychoflow.cli.init_cmd:no_such_command"})
    result = CliRunner().invoke(wrong_attribute, ["init", "--help"])
    assert isinstance(result.exception, PtychoflowError) and "no_such_command" in str(result.exception)


def test_an_unknown_command_is_a_usage_error_not_a_crash():
    result = CliRunner().invoke(cli, ["reconstrut"])
    assert result.exit_code == 2 and "No such command 'reconstrut'" in result.output


@needs_console_script
def test_installed_console_script_lists_every_command():
    result = subprocess.run([str(CONSOLE_SCRIPT), "--help"], capture_output=True, text=True, timeout=120,
                            env=console_env())
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    commands = result.stdout.split("Commands:")[1]
    listed = {line.split()[0] for line in commands.strip().splitlines()}
    assert listed == set(SUBCOMMANDS)


@needs_console_script
def test_bare_console_script_shows_the_help():
    result = subprocess.run([str(CONSOLE_SCRIPT)], capture_output=True, text=True, timeout=120,
                            env=console_env())
    assert "Traceback" not in result.stderr, result.stderr
    assert "Usage: ptychoflow" in result.stdout + result.stderr and "Quick start" in result.stdout + result.stderr
