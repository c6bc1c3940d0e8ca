"""One-line errors for the command-line tools: what is wrong and how to fix it, no traceback."""
import functools
import signal
import sys


class CtrackError(Exception):
    """An error a user can act on; its message is the whole line printed."""


def cli_main(func):
    """Wrap a tool's main(): CtrackError and bad environments become one line and exit 1;
    Ctrl-C exits quietly (130) unless the tool handled it; SIGTERM behaves like Ctrl-C."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        def on_term(signum, frame):
            raise KeyboardInterrupt
        signal.signal(signal.SIGTERM, on_term)
        prog = sys.argv[0].rsplit("/", 1)[-1]
        try:
            rc = func(*args, **kwargs)
        except CtrackError as exc:
            print(f"{prog}: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130
        except BrokenPipeError:
            # `ctrack ... | head`: the reader left; nothing more to say.
            try:
                sys.stdout = None
            except Exception:
                pass
            return 0
        return rc or 0

    return wrapper
