"""The tools' command lines: every argument checked before anything is measured, and a mistake said in
one line (`error: --seconds must be ...`) with exit code 2, as train.py and sample.py say theirs."""

import argparse
import math
import os
import sys
from pathlib import Path
from typing import NoReturn

SIZE_UNITS = {"KB": 10**3, "MB": 10**6, "GB": 10**9, "B": 1}


class Parser(argparse.ArgumentParser):
    """argparse, with its usage line left to --help: a mistake is the one line that names it."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} (--help lists the options)", file=sys.stderr)
        sys.exit(2)


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1, got {text!r}")
    return int(text)


def positive_number(what: str):
    """An argument type for a finite number above 0, its error naming what it is ("learning rate")."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value > 0):
            raise argparse.ArgumentTypeError(f"must be a positive {what}, got {text!r}")
        return value

    return parse


positive_seconds = positive_number("number of seconds")


def shape(text: str) -> tuple[int, int, int]:
    """H,B,T: three whole numbers from 1."""
    parts = text.split(",")
    if len(parts) != 3 or not all(p.isdigit() and int(p) >= 1 for p in parts):
        raise argparse.ArgumentTypeError(f"must be H,B,T, three whole numbers from 1 (e.g. 128,32,64), got {text!r}")
    return tuple(int(p) for p in parts)


def byte_size(text: str) -> int:
    """A number of bytes as a person writes it: 123, 1.5kb, 10MB, 1GB (powers of ten)."""
    upper = text.strip().upper()
    unit = next((u for u in SIZE_UNITS if upper.endswith(u)), "")
    try:
        value = float(upper[: len(upper) - len(unit)]) * SIZE_UNITS.get(unit, 1)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 1):
        raise argparse.ArgumentTypeError(f"must be a size such as 20KB, 10MB or 1GB, got {text!r}")
    return int(value)


def existing_file(text: str) -> Path:
    path = Path(text).expanduser()
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text} is not a file")
    return path


def work_dir(text: str) -> Path:
    """A directory to work in, made if absent."""
    path = Path(text).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise argparse.ArgumentTypeError(f"cannot make the directory {text}: {e.strerror}") from None
    return path


def output_file(text: str) -> Path:
    """A file the figures can be written to, checked now rather than after minutes of measuring."""
    path = Path(text).expanduser()
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a directory; name a file to write the figures to")
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"the directory of {text} does not exist")
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise argparse.ArgumentTypeError(f"{text} cannot be written")
    return path
