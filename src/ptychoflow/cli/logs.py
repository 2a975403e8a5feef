"""``ptychoflow logs SERVICE``: the last lines of a service's log file, optionally followed."""

from __future__ import annotations

import os
import time
from collections import deque
from pathlib import Path
from typing import TextIO

import click

from ptychoflow.cli._common import load, profile_option
from ptychoflow.servicelog import BACKUPS, SERVICES, log_path

FOLLOW_POLL_S = 0.25


def _last_lines(path: Path, count: int) -> list[str]:
    """The last `count` lines of the log, reaching into the rotated files (.1, .2, …) if needed."""
    lines: deque[str] = deque(maxlen=count)
    older = [path.with_name(f"{path.name}.{n}") for n in range(BACKUPS, 0, -1)]
    for file in [*older, path]:
        if file.exists():
            with open(file, errors="replace") as handle:
                lines.extend(handle)
    return list(lines)


def _follow(path: Path, handle: TextIO) -> None:
    """Print lines as they are written, across rotations (like ``tail -F``), until Ctrl-C."""
    inode = os.fstat(handle.fileno()).st_ino
    while True:
        line = handle.readline()
        if line:
            click.echo(line, nl=False)
            continue
        time.sleep(FOLLOW_POLL_S)
        try:
            rotated = os.stat(path).st_ino != inode
        except FileNotFoundError:
            continue
        if rotated:
            for rest in handle:  # what was written before the rename
                click.echo(rest, nl=False)
            handle.close()
            handle = open(path, errors="replace")
            inode = os.fstat(handle.fileno()).st_ino


@click.command()
@click.argument("service", type=click.Choice(SERVICES))
@click.option("-n", "--lines", "count", type=click.IntRange(min=0), default=40, show_default=True,
              help="How many of the last lines to print.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines as the service writes them (Ctrl-C ends).")
@profile_option
def logs(service: str, count: int, follow: bool, profile_path: Path | None) -> None:
    """Print the end of SERVICE's log: <state_dir>/SERVICE.log, rotated at 5 MiB (5 kept).

    Every service (engine, watcher, edge, dashboard) writes its log there as well as to its
    stderr (which systemd keeps in the journal).

    \b
    Examples:
      ptychoflow logs engine
      ptychoflow logs watcher -n 100 --profile site/
      ptychoflow logs edge --follow
    """
    from ptychoflow.errors import InputError

    path = log_path(load(profile_path).state_path, service)
    if not path.exists():
        raise InputError(path, "(file)", f"no {service} log yet: the {service} has not run with this state directory")
    for line in _last_lines(path, count):
        click.echo(line, nl=False)
    if follow:
        handle = open(path, errors="replace")
        handle.seek(0, os.SEEK_END)
        try:
            _follow(path, handle)
        except KeyboardInterrupt:
            pass
