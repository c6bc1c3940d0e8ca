"""How every script in tools/ starts its tool: entry("ctrack.top.app") imports the module and
calls its main(), with the one guard they all need.

A Ctrl-C or SIGTERM that lands while the modules load (BCC's and numpy's imports take a second
on a busy machine) finds nothing to clean up yet; raised inside an import it would surface as a
traceback, or as an ImportError where a library wraps what interrupted it (numpy does). So both
signals are only noted while importing, and the tool then leaves as it does later, with 130.
Once main() runs, Ctrl-C is a KeyboardInterrupt again (ctrack.errors.cli_main turns SIGTERM
into one too).
"""
import importlib
import signal
import sys


def entry(module):
    caught = []

    def note(signum, frame):
        caught.append(signum)

    old = {s: signal.signal(s, note) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        main = importlib.import_module(module).main
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    if caught:
        sys.exit(130)
    sys.exit(main())
