"""The `cnnviz` command line: train, evaluate, predict, explain and compare.

A thin adapter over the library: `train` and `evaluate` go through
`cnnviz.runs`, exactly as the studio does. Bad input never shows a traceback:
the command prints one line on stderr that says what is wrong and exits with
status 2 (1 for a failure mid-way). With `--json`, the last line on stdout is
one JSON object.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile

from cnnviz.cli.arguments import UsageError, build_parser
from cnnviz.cli.commands import COMMANDS, EXIT_BAD_INPUT, EXIT_FAILED

__all__ = ["build_parser", "main"]


@contextlib.contextmanager
def native_stderr_held_back():
    """Keeps what native code writes to file descriptor 2 off the terminal, unless the block fails.

    TensorFlow's C++ side logs INFO lines while it loads ("oneDNN custom operations are
    on", on CPUs with AVX-512) before TF_CPP_MIN_LOG_LEVEL applies. The CLI's stderr
    is for its own one-line messages, so such lines go to a temporary file, shown only
    if the block raises.
    """
    try:
        saved = os.dup(2)
    except OSError:  # no descriptor 2 to redirect
        yield
        return
    with tempfile.TemporaryFile() as held:
        sys.stderr.flush()
        os.dup2(held.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode(errors="replace"))
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def main(argv: list[str] | None = None) -> int:
    """Runs the CLI; returns the exit status."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from cnnviz.errors import CnnvizError

    try:
        args = build_parser().parse_args(argv)
        with native_stderr_held_back():
            import tensorflow  # every command needs it; --help and usage errors do not

            # Its Python-side warnings (e.g. about retracing a probe per layer) are not the CLI's to show.
            tensorflow.get_logger().setLevel("ERROR")
        return COMMANDS[args.command](args)
    except UsageError as error:
        print(str(error), file=sys.stderr)
        return EXIT_BAD_INPUT
    except CnnvizError as error:
        print(f"cnnviz: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("cnnviz: interrupted.", file=sys.stderr)
        return 130
    except MemoryError:
        print(
            "cnnviz: out of memory; use smaller images, a smaller batch size or fewer images.",
            file=sys.stderr,
        )
        return EXIT_FAILED
    except OSError as error:
        print(f"cnnviz: {error.strerror or error}: {error.filename or ''}".rstrip(": "), file=sys.stderr)
        return EXIT_FAILED
