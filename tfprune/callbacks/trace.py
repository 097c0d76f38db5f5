"""Writing a callback's decision trace (CSV or JSON) so that it is never half-written."""

from __future__ import annotations

import csv
import io
import json
import pathlib

from tfprune.core.files import write_atomically


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
    path = pathlib.Path(path)
    if path.suffix == ".json":
        write_atomically(path, json.dumps(events, indent=2))
        return
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=list(events[0]))
    writer.writeheader()
    writer.writerows(events)
    write_atomically(path, text.getvalue())
