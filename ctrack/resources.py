"""Where ctrack finds its run-time files: the C programs, the lab's scenarios and its helper binary.

An installed ctrack carries them inside the package: setup.py copies kernel/ (with kernel/lib/) to
ctrack/_data/kernel, lab/scenarios/ to ctrack/_data/scenarios and builds lab/delayline.c into
ctrack/_data/bin. A checkout (and an editable install of one) has no _data/: there the files are
found where the repository keeps them, kernel/ and lab/ beside the package. Both are found from
this file's own location, never from the current directory, so a tool works from anywhere.

Each directory can be overridden by an environment variable (CTRACK_KERNEL_DIR, e.g. for
benchmarking a clean copy of an older kernel/; CTRACK_SCENARIO_DIR; CTRACK_LAB_BIN).
"""
import os

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
DATA_DIR = os.path.join(PACKAGE_DIR, "_data")
CHECKOUT_DIR = os.path.dirname(PACKAGE_DIR)


def _locate(env, packaged, checkout):
    if os.environ.get(env):
        return os.environ[env]
    inside = os.path.join(DATA_DIR, packaged)
    if os.path.isdir(inside):
        return inside
    return os.path.join(CHECKOUT_DIR, checkout)


def installed():
    """True when the run-time files come from inside the package (a non-editable install)."""
    return os.path.isdir(DATA_DIR)


KERNEL_DIR = _locate("CTRACK_KERNEL_DIR", "kernel", "kernel")
SCENARIO_DIR = _locate("CTRACK_SCENARIO_DIR", "scenarios", os.path.join("lab", "scenarios"))
LAB_BIN = _locate("CTRACK_LAB_BIN", "bin", os.path.join("lab", "bin"))
# The lab helpers' sources, to build them on first need: only a checkout has them.
LAB_SRC = None if installed() else os.path.join(CHECKOUT_DIR, "lab")
