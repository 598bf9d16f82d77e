"""`safeschool` command line: run the bot, migrate, manage the directory, invitations,
escalation and campaigns, read the statistics. One module per command group; this one
only wires them."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from importlib import metadata

# The adapters register what each messenger can take (text limits, menus): commands that
# queue messages fit them to the recipient's messenger like the running bot does.
import bot.channels.telegram
import bot.channels.zalo  # noqa: F401
from bot.cli import (
    backup,
    campaign,
    demo,
    directory,
    escalation,
    invite,
    keys,
    person,
    retention,
    run,
    stats,
)
from bot.cli.common import EXIT_USAGE, CliError, choose_language, key_problem
from bot.core.settings import LANGUAGES
from storage.crypto import DataKeyError


def _version() -> str:
    try:
        return metadata.version("safeschool-link")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "(not installed)"


def build_parser() -> argparse.ArgumentParser:
    """Describe every command and flag."""
    parser = argparse.ArgumentParser(prog="safeschool", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("--lang", choices=LANGUAGES, help="language of messages (default: "
                        "SAFESCHOOL_DEFAULT_LANGUAGE, else vi); also after the command")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in (run, demo, backup, directory, invite, escalation, campaign, stats, keys,
                  retention, person):
        group.register(sub)
    return parser


def _take_lang(argv: list[str]) -> tuple[list[str], str | None]:
    """--lang X (or --lang=X) wherever it was typed: `safeschool directory import f.xlsx
    --lang en` reads as naturally as `safeschool --lang en directory import f.xlsx`."""
    rest: list[str] = []
    lang = None
    items = iter(argv)
    for item in items:
        if item == "--lang":
            lang = next(items, None)
        elif item.startswith("--lang="):
            lang = item.partition("=")[2]
        else:
            rest.append(item)
    return rest, lang


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `safeschool` console script."""
    rest, lang = _take_lang(list(sys.argv[1:] if argv is None else argv))
    parser = build_parser()
    if lang is not None and lang not in LANGUAGES:
        parser.error(f"argument --lang: invalid choice: {lang!r} (choose from "
                     f"{', '.join(LANGUAGES)})")
    choose_language(lang)
    args = parser.parse_args(rest)
    if args.command != "run":
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return asyncio.run(args.func(args))
    except CliError as exc:
        print(f"safeschool: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except DataKeyError as exc:  # data under a key we do not have: one sentence, no traceback
        print(f"safeschool: {key_problem(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`safeschool … | head`): stop quietly, and keep Python from
        # complaining again when it flushes stdout on exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
