"""cclink: hand a Claude Code session to another machine over the Mainline DHT.

The package in layers, each importing only those below it:

- cli/: the command line (commands, rendering, prompts)
- flows/: what publish, pickup, list, revoke, --carry and init do
- net/: the DHT client, the record store, libtorrent sessions, BitTorrent transfers
- wire/: the formats, one file each (docs/wire.md)
- local/: this machine's files, Claude Code's sessions, streams
- dev/: the local test network and `cclink demo`

errors.py (the one exception hierarchy) and text.py (words for people:
durations, sizes, escaping) serve every layer. docs/development.md has the
whole module map.
"""

__version__ = "0.1.0"
