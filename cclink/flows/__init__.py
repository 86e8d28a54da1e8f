"""What the commands do, between the command line and the formats and networks they use.

- ui.py: the UI a flow is given (say, secret, confirm, choose, progress) instead of a terminal
- environment.py: what a flow knows of the machine: cwd, hostname, clock, key store, record store, network
- publish.py: pick the session, seal and publish the record; with --carry, seed until acknowledged
- pickup.py: find, verify, decrypt, confirm, revoke a burn; get ready to resume (fetching a carried session first)
- manage.py: list and revoke your handoff
- carry.py: --carry's transfer: pack, encrypt, seed; fetch and check what the signed record promised
- acknowledgement.py: the picker's proof that the whole session arrived, which ends the publisher's seeding
- placing.py: a fetched session decrypted, unpacked within bounds, its paths rewritten, moved into place
- keystore.py: your own key: init (create or import), load, whoami

A flow neither prints nor prompts nor reads globals: it is handed a UI and
an Environment, and returns results that the CLI renders.
"""
