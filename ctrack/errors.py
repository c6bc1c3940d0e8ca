"""One-line errors for the command-line tools: what is wrong and how to fix it, no traceback."""
import argparse
import functools
import signal
import sys


class CtrackError(Exception):
    """An error a user can act on; its message is the whole line printed."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the tools' one-line usage errors, exit status 2:
    `ctrack run: unrecognized arguments: --bogus (try `ctrack run -h`)`."""

    def error(self, message):
        self.exit(2, f"{self.prog}: {message} (try `{self.prog} -h`)\n")

    def parse_args(self, args=None, namespace=None):
        # Unknown flags after a sub-command are the sub-command's error, not the top level's:
        # report them with its name and its -h.
        args, extra = self.parse_known_args(args, namespace)
        if extra:
            culprit = getattr(args, "_subparser", None) or self
            culprit.error("unrecognized arguments: " + " ".join(extra))
        if hasattr(args, "_subparser"):
            del args._subparser
        return args

    def add_subparsers(self, **kw):
        kw.setdefault("parser_class", ArgumentParser)
        action = super().add_subparsers(**kw)
        add = action.add_parser

        def add_parser(name, **pkw):
            sp = add(name, **pkw)
            sp.set_defaults(_subparser=sp)
            return sp
        action.add_parser = add_parser
        return action


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
