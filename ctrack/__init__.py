"""ctrack: eBPF connection tracking and TCP observability (BCC programs under kernel/, Python here)."""
import os

__version__ = "0.1.0"

# The C programs live in kernel/ beside the package; CTRACK_KERNEL_DIR overrides for odd installs.
KERNEL_DIR = os.environ.get(
    "CTRACK_KERNEL_DIR",
    os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "kernel"),
)
