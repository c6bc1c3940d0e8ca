"""`ctrack`: the tracker's command line. Subcommands live in their own modules (ctrack/cli/*.py); this
file only builds the parser and dispatches."""
import argparse
import sys

from ctrack.errors import ArgumentParser, CtrackError, cli_main

DESCRIPTION = "ctrack: eBPF connection tracking (TCP state machine per endpoint, UDP flows)"

EXAMPLES = """examples:
  ctrack replay capture.pcap                 # each packet's verdict and flow state, then the table
  ctrack replay --json capture.pcapng        # the same as one JSON document
  ctrack replay --policy enforce --pickup c.pcap   # drop INVALID, but pick up mid-stream flows
  ctrack replay --timeout ESTABLISHED=30 c.pcap    # shorter per-state timeout (seconds)
  ctrack <command> -h                        # help for one command
"""


def build_parser():
    # Registered explicitly: a subcommand that fails to import is an error to see, not a
    # command that silently vanishes from -h.
    from . import events as cmd_events, gc as cmd_gc, list as cmd_list, replay as cmd_replay, run as cmd_run
    parser = ArgumentParser(prog="ctrack", description=DESCRIPTION, epilog=EXAMPLES,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in (cmd_replay, cmd_run, cmd_list, cmd_events, cmd_gc):
        mod.add_parser(sub)
    return parser


@cli_main
def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
