"""What the commands do, between the command line and the formats and networks they use.

- handoff.py: publish, pickup, list and revoke
- carry.py: --carry: pack, encrypt and seed a session; fetch, check, decrypt, place and acknowledge it
- keystore.py: your own key: init (create or import), load, whoami

The flows still ask and tell through cli.console; taking a UI and an
environment as arguments instead is the next step of the layout work.
"""
