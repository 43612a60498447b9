"""Printing command results as text or, with --json, as JSON."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any


def emit(args: argparse.Namespace, data: Any, text: Callable[[Any], str]) -> None:
    """Print `data` as JSON with --json, else as the text rendering."""
    if args.json:
        json.dump(data, sys.stdout, indent=2, sort_keys=True, default=str)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(text(data))
