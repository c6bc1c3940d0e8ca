"""Helpers shared by the test groups (unit/, tracker/, live/, lab/), imported as `helpers.X`
(tests/ is on sys.path, put there by tests/conftest.py):

  helpers.wire       scapy conversations (TcpConv, udp_frame, ...) run through a Replayer
  helpers.replayers  get_replayer(): real trackers compiled once per configuration per session
  helpers.seed       writing a struct ct_entry straight into a test tracker's table (SETUP step)
  helpers.captures   the reference conversation and pcap/pcapng writers
  helpers.live       real `ctrack run` trackers in namespace labs (fixtures make_lab, trackers)
  helpers.observers  traffic and tool runs for the observers (tcpstates, tcprtt)
"""
import os

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(TESTS)
