"""The ``ssdann`` command (build, info, verify, search, eval, gt, demo, insert, delete, merge,
...), installed on PATH by ``pip install``; the same program as the Rust ``ssdann`` binary,
compiled into the extension module. ``ssdann --help`` lists the subcommands;
``python -m ssdann`` runs it too."""
import signal
import sys

from ._ssdann import _cli


def main() -> None:
    """Entry point of the ``ssdann`` console script: runs the command with ``sys.argv``."""
    # A command line piped into `head` ends quietly when the pipe closes, as the Rust binary
    # does (Python ignores SIGPIPE, which would turn a closed pipe into a panic).
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.stdout.flush()
    argv = ["ssdann"] + sys.argv[1:]
    sys.exit(_cli(argv))


if __name__ == "__main__":
    main()
