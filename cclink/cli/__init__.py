"""The command line: what a person types and sees.

- app.py: the entry point and `help`; group.py: the typer group the commands register with
- publish.py, pickup.py, keys.py (init, whoami), manage.py (list, revoke), agent.py (agent, unlock, lock,
  status), dev.py (relay, testnet, demo): one module a command or a few; arguments in, a flow called,
  its result shown
- render.py: how results look: text lines and JSON documents
- exits.py: the one place errors become one sentence and an exit code; SIGTERM and SIGHUP
- console.py: prompts, confirmations, menus, spinners and QR codes on stderr; results on stdout
"""
