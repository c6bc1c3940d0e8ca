"""Installs the ctrack package and its command-line tools (tools/*) for Debian's python3."""
import glob
import os

from setuptools import find_packages, setup

setup(
    name="ctrack",
    version="0.1.0",
    description="eBPF connection tracking and TCP observability",
    packages=find_packages(include=["ctrack", "ctrack.*"]),
    # The C programs are compiled by BCC at run time, so they ship beside the package.
    package_data={"ctrack": []},
    scripts=sorted(p for p in glob.glob("tools/*") if os.path.isfile(p) and not p.endswith((".md", ".txt"))),
    python_requires=">=3.9",
)
