"""Helpers the tests share, imported as a package (`from support.machines import Machine`).

machines   Machines that run the real cclink command (cclink.dev.machine, with pytest's checks).
terminal   A program on a pseudo-terminal, answered as a person would.
carry      Carried sessions: transcripts, a publisher's stderr, what a pickup left behind.

The fixtures built on them are in tests/conftest.py.
"""
