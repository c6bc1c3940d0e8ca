"""Keys for ctrack-top: the terminal in cbreak mode (keys arrive one by one, unechoed; Ctrl-C
still interrupts), read with select so the refresh loop never blocks on the keyboard.

Rich draws but reads no keys, hence this. KeyReader restores the terminal's settings on close,
whatever happened (also after an exception or Ctrl-C).
"""
import os
import select
import termios
import tty

# escape sequences of the keys ctrack-top uses -> names
SEQUENCES = {
    "\x1b[A": "up", "\x1b[B": "down", "\x1b[C": "right", "\x1b[D": "left",
    "\x1bOA": "up", "\x1bOB": "down",
    "\x1b[5~": "pgup", "\x1b[6~": "pgdn",
    "\x1b[H": "home", "\x1b[F": "end", "\x1b[1~": "home", "\x1b[4~": "end",
    "\x1bOH": "home", "\x1bOF": "end",
}


class KeyReader:
    def __init__(self, fd=0):
        self.fd = fd
        self.saved = termios.tcgetattr(fd)
        tty.setcbreak(fd)
        self.buf = ""

    def _fill(self, timeout):
        r, _, _ = select.select([self.fd], [], [], timeout)
        if not r:
            return False
        data = os.read(self.fd, 1024)
        if not data:
            return False
        self.buf += data.decode(errors="replace")
        return True

    def read(self, timeout):
        """The next key within timeout seconds: a character, a name from SEQUENCES ('up',
        'pgdn', ...), 'esc', 'enter', 'backspace', or None."""
        if not self.buf and not self._fill(timeout):
            return None
        if self.buf[0] == "\x1b":
            # an escape sequence arrives in one read; give a split one a moment to complete
            if len(self.buf) == 1:
                self._fill(0.03)
            for seq, name in SEQUENCES.items():
                if self.buf.startswith(seq):
                    self.buf = self.buf[len(seq):]
                    return name
            if len(self.buf) > 1 and self.buf[1] in "[O":
                # an unknown sequence: drop it whole (up to its final letter or ~)
                i = 2
                while i < len(self.buf) and not (self.buf[i].isalpha() or self.buf[i] == "~"):
                    i += 1
                self.buf = self.buf[i + 1:]
                return None
            self.buf = self.buf[1:]
            return "esc"
        ch, self.buf = self.buf[0], self.buf[1:]
        if ch in "\r\n":
            return "enter"
        if ch in "\x7f\x08":
            return "backspace"
        return ch

    def close(self):
        termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)
