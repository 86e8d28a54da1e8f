"""What the commands do, between the command line and the formats and networks they use.

- ui.py: the UI a flow is given (say, secret, confirm) instead of a terminal
- publish.py: pick the session, seal and publish the record; with --carry, seed until acknowledged
- pickup.py: find, verify, decrypt, confirm, revoke a burn, resume (fetching a carried session first)
- manage.py: list and revoke your handoff
- carry.py: --carry's mechanics: pack, encrypt, seed; fetch, check, decrypt, place; the acknowledgement
- keystore.py: your own key: init (create or import), load, whoami; asks only through its UI

publish, pickup and manage still ask and tell through cli.console; giving
them a UI and an environment as arguments, as keystore.py has, is the next
step of the layout work.
"""
