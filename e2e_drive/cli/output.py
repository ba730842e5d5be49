"""The one way a command reports its result: one JSON object on stdout with ``--json``, else text for people.

Everything else (progress, notes, warnings) goes to stderr through ``logging``, so ``--json`` output can be
piped into ``jq`` or ``json.loads`` as it is.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from data_tools.io import json_default


def emit(args: argparse.Namespace, payload: dict[str, Any], text: str) -> None:
    """Print ``payload`` as one JSON object on stdout with ``--json``, else ``text`` (when not empty)."""
    if getattr(args, "json", False):
        json.dump(payload, sys.stdout, indent=2, default=json_default)
        sys.stdout.write("\n")
    elif text:
        sys.stdout.write(text.rstrip("\n") + "\n")
    sys.stdout.flush()
