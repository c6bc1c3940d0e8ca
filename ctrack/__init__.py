"""ctrack: eBPF connection tracking and TCP observability (BCC programs under kernel/, Python here)."""
import os

__version__ = "0.1.0"

# The C programs (kernel/), found inside an installed package or beside it in a checkout.
from .resources import KERNEL_DIR  # noqa: E402,F401
