"""The commands that deployment files run, read out of shell text and checked with the real parsers:
``neurolake`` with the CLI's own argparse parser, ``ray start`` with Ray's click command, ``pip
install`` against the lock files."""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]

# Shell operators that separate one command from the next in a line.
_SEPARATORS = re.compile(r"\s*(?:&&|\|\||;|\|)\s*")


def load_yaml_documents(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [doc for doc in yaml.safe_load_all(fh) if doc is not None]


def shell_commands(text: str) -> list[list[str]]:
    """Every simple command in a piece of shell text, as argv lists.

    Lines are commands; ``&&``, ``||``, ``;`` and ``|`` separate commands within a line (quoted
    operators stay inside their word); a leading ``VAR=value`` assignment or ``exec`` is dropped.
    """
    commands = []
    for line in text.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        current: list[str] = []
        for word in lexer:
            if word and set(word) <= set(";&|"):
                if current:
                    commands.append(current)
                current = []
            else:
                current.append(word)
        if current:
            commands.append(current)
    cleaned = []
    for argv in commands:
        while argv and (re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", argv[0]) or argv[0] == "exec"):
            argv = argv[1:]
        if argv:
            cleaned.append(argv)
    return cleaned


def program(argv: list[str]) -> str:
    return Path(argv[0]).name


def parse_neurolake(argv: list[str]) -> argparse.Namespace:
    """Parse ``neurolake ARGS`` with the CLI's own parser; a bad verb or flag is an AssertionError
    carrying argparse's message."""
    from neurolake.cli import build_parser

    assert program(argv) == "neurolake", argv
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = build_parser().parse_args(argv[1:])
    except SystemExit as exc:
        raise AssertionError(
            f"`{shlex.join(argv)}` is not a valid neurolake command: {err.getvalue().strip()}"
        ) from exc
    assert callable(getattr(args, "func", None)), argv
    return args


def parse_ray_start(argv: list[str]) -> dict:
    """Parse ``ray start ARGS`` with Ray's own click command; returns its parameters."""
    import click
    from ray.scripts.scripts import start

    assert program(argv) == "ray" and argv[1] == "start", argv
    try:
        return start.make_context("start", list(argv[2:])).params
    except click.UsageError as exc:
        raise AssertionError(f"`{shlex.join(argv)}` is not a valid ray start: {exc}") from exc


def ray_start_params_to_argv(params: dict[str, str], head: bool) -> list[str]:
    """KubeRay's ``rayStartParams`` as the ``ray start`` command line it becomes."""
    return ["ray", "start", *(["--head"] if head else []), *(f"--{key}={value}" for key, value in params.items())]


def pip_constraint_files(argv: list[str]) -> list[str]:
    """The ``-c``/``--constraint`` files of a ``pip install`` command line."""
    files = []
    for i, word in enumerate(argv):
        if word in ("-c", "--constraint"):
            files.append(argv[i + 1])
        elif word.startswith("--constraint="):
            files.append(word.split("=", 1)[1])
    return files


def lock_pins(path: Path) -> dict[str, str]:
    """``name -> version`` of every ``==`` pin of a lock file (markers ignored)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        req = Requirement(text)
        exact = [s.version for s in req.specifier if s.operator == "=="]
        if exact:
            pins[canonicalize_name(req.name)] = exact[0]
    return pins
