"""This machine: where cclink keeps its files, Claude Code's sessions, and byte streams between threads.

- files.py: key, cache and state directories (Linux and macOS); atomic private files
- claude.py: Claude Code's session files, and starting `claude --resume=<id>`
- streams.py: a pipe between two threads, reading ahead, hashing, watching for failures
- threads.py: several blocking calls at once (lookups and puts under several keys, or DHT and relays)

The bottom layer: it imports nothing of cclink's but errors.
"""
