"""Non-blocking exclusive file locks (flock), shared by the lab's state lock and the collector's
one-per-tracker lock."""
import errno
import fcntl
import os


def try_lock(path):
    """Open (creating) `path` and take an exclusive flock on it without waiting. Returns the
    open descriptor, which holds the lock until closed, or None when another holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise
        return None
    return fd
