"""Writing a callback's decision trace (CSV or JSON) so that it is never half-written."""

from __future__ import annotations

import csv
import json
import os
import pathlib


def write_trace(path: pathlib.Path, events) -> None:
    """Write the decision trace atomically (CSV, or JSON for a .json path)."""
    temporary = path.with_name(f".{path.name}.part")
    if path.suffix == ".json":
        temporary.write_text(json.dumps(events, indent=2))
    else:
        with temporary.open("w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=list(events[0]))
            writer.writeheader()
            writer.writerows(events)
    os.replace(temporary, path)
