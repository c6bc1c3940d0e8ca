"""The namespace lab (ctrack-lab): topology, addresses, delay line, sock_ops, scenarios."""


def __getattr__(name):
    # Lab keeps its import path from before the package (lab.py); loaded on first use only.
    if name == "Lab":
        from ctrack.lab.core import Lab
        return Lab
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
