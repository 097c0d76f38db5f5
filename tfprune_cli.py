"""Entry point of the `tfprune` console script.

It lives outside the `tfprune` package on purpose: importing the package imports TensorFlow,
whose C++ runtime prints start-up notices (CUDA, oneDNN) straight to file descriptor 2 before
any log level applies. Here that import happens with descriptor 2 pointed at /dev/null, so a
failing command's stderr is just its one-line error. Set TFPRUNE_DEBUG=1 to see the notices.
"""

import os
import sys


def main():
    """Import tfprune quietly, then run `tfprune.cli.main` and exit with its status."""
    quiet = not os.environ.get("TFPRUNE_DEBUG")
    if quiet:
        sys.stderr.flush()
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
    try:
        from tfprune import cli
    finally:
        if quiet:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)
    sys.exit(cli.main())
