"""What the commands do, between the command line and the formats and networks they use.

- ui.py: the UI a flow is given (say, secret, confirm) instead of a terminal
- handoff.py: publish, pickup, list and revoke
- carry.py: --carry: pack, encrypt and seed a session; fetch, check, decrypt, place and acknowledge it
- keystore.py: your own key: init (create or import), load, whoami; asks only through its UI

handoff.py still asks and tells through cli.console; giving it a UI and an
environment as arguments, as keystore.py has, is the next step of the layout work.
"""
