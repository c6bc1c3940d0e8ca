"""Installs the ctrack package and its command-line tools (tools/*) for Debian's python3.

ctrack needs files besides its Python modules at run time: the C programs BCC compiles (kernel/),
the lab's scenarios (lab/scenarios/) and the lab's delay line, a C helper built here. The
repository keeps them at its top level; a build copies them into the package as ctrack/_data/
(see ctrack/resources.py), so an installed ctrack works from any directory without the checkout.
"""
import glob
import os
import shutil
import subprocess
import sys

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


class build_py_with_data(build_py):
    """build_py, plus kernel/ (with kernel/lib/) and lab/scenarios/ copied and the delay line built
    into _data/."""

    def run(self):
        super().run()
        data = os.path.join(self.build_lib, "ctrack", "_data")
        # a build directory left by an earlier build keeps files the checkout has since removed
        # or renamed: start the data afresh so that what installs is exactly the checkout's
        shutil.rmtree(data, ignore_errors=True)
        # kernel/lib/ keeps its place under kernel/: tracker.c includes "lib/x.h"
        for sub, pattern in (("kernel", "kernel/*.[ch]"), (os.path.join("kernel", "lib"), "kernel/lib/*.h"),
                             ("scenarios", "lab/scenarios/*.py")):
            os.makedirs(os.path.join(data, sub), exist_ok=True)
            for src in sorted(glob.glob(os.path.join(HERE, pattern))):
                shutil.copy2(src, os.path.join(data, sub))
        # The delay line links libnetfilter_queue; without its headers the rest still installs
        # and the lab says what is missing when a delay is asked for.
        bindir = os.path.join(data, "bin")
        os.makedirs(bindir, exist_ok=True)
        res = subprocess.run(["make", "-s", "-C", os.path.join(HERE, "lab"), "bin/delayline"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        built = os.path.join(HERE, "lab", "bin", "delayline")
        if res.returncode == 0 and os.path.exists(built):
            shutil.copy2(built, bindir)
        else:
            print(f"ctrack: lab/delayline.c not built (the lab's --delay/--loss need it): {res.stdout.strip()}",
                  file=sys.stderr)


setup(
    name="ctrack",
    version="0.1.0",
    description="eBPF connection tracking and TCP observability",
    packages=find_packages(include=["ctrack", "ctrack.*"]),
    cmdclass={"build_py": build_py_with_data},
    scripts=sorted(p for p in glob.glob("tools/*") if os.path.isfile(p) and not p.endswith((".md", ".txt"))),
    python_requires=">=3.9",
)
