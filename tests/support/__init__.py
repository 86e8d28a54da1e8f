"""Helpers the tests share, imported as a package (`from support.machines import Machine`).

machines   Machines that run the real cclink command (cclink.dev.machine, with pytest's checks).
terminal   A program on a pseudo-terminal, answered as a person would.
carry      Carried sessions: transcripts, a publisher's stderr, what a pickup left behind.
desks      Machines for flows run in process: a HOME, a key, a clock, an Environment over an in-memory DHT.
records    The DHT's items in memory (BEP 44's rules), under a real RecordStore.
ui         A scripted UI: answers given in advance, every question and line kept.
archives   Tar archives built byte by byte, hostile ones included.
hostile_node  A DHT node that lies.
pkarr_js   npm pkarr (scripts/pkarr-js), one DHT operation per node process; skips where it is not installed.

The fixtures built on them are in tests/conftest.py.
"""
