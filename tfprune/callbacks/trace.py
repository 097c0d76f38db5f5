"""Writing a callback's decision trace (CSV or JSON) so that it is never half-written."""

from __future__ import annotations

import csv
import json
import os
import pathlib


def write_trace(path: pathlib.Path, events) -> None:
    """Write a decision trace atomically: a reader never sees half a file.

    Args:
        path: the file to write; a `.json` name gives JSON, anything else CSV.
        events: a non-empty list of dicts with the same keys (one row each).

    Example:

    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "trace.csv"
    >>> write_trace(path, [{"step": 0, "decision": "advance"}])
    >>> path.read_text().splitlines()
    ['step,decision', '0,advance']
    """
    temporary = path.with_name(f".{path.name}.part")
    if path.suffix == ".json":
        temporary.write_text(json.dumps(events, indent=2))
    else:
        with temporary.open("w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=list(events[0]))
            writer.writeheader()
            writer.writerows(events)
    os.replace(temporary, path)
