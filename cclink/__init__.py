"""cclink: hand a Claude Code session to another machine over the Mainline DHT."""

__version__ = "0.1.0"
