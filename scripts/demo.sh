#!/usr/bin/env bash
# `make demo`: the live demo (scripts/demo.py) with Debian's python3, which has BCC.
exec /usr/bin/python3 "$(dirname "$0")/demo.py" "$@"
