"""Shared by the benchmark scripts: write results with the date, machine and command."""

import json
import os
import pathlib
import platform
import sys
import time


def write_report(path, results: dict) -> pathlib.Path:
    """Write `results` as JSON to `path`, stamped with the date, the machine and the command.

    Args:
        path: the JSON file to write (its folder is created).
        results: the script's numbers.

    Returns:
        The path written.
    """
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "command": " ".join(["python", f"tools/{pathlib.Path(sys.argv[0]).name}", *sys.argv[1:]]),
        **results,
    }
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    print(f"wrote {path}")
    return path
