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
    args = sys.argv[1:]
    if args[:1] == ["plot"]:
        from .plot import main as plot_main

        sys.exit(plot_main(args[1:]))
    if args[:1] == ["eval"] and "--plot" in args:
        sys.exit(_eval_and_plot(args))
    sys.exit(_cli(["ssdann"] + args))


def _eval_and_plot(args) -> int:
    """``ssdann eval ... --plot PNG``: the eval (with --json, to a temporary file unless
    given), then the plot."""
    import os
    import tempfile

    from .plot import main as plot_main

    i = args.index("--plot")
    if i + 1 >= len(args):
        print("error: --plot needs a PNG path", file=sys.stderr)
        return 2
    png = args[i + 1]
    rest = args[:i] + args[i + 2 :]
    with tempfile.TemporaryDirectory() as tmp:
        if "--json" in rest:
            j = rest[rest.index("--json") + 1]
        else:
            j = os.path.join(tmp, "eval.json")
            rest = rest + ["--json", j]
        rc = _cli(["ssdann"] + rest)
        if rc != 0:
            return rc
        return plot_main([j, "--out", png])


if __name__ == "__main__":
    main()
