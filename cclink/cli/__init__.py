"""The command line: what a person types and sees.

- app.py: the commands (typer): arguments in, a flow called, its result shown
- render.py: how results look: text lines and JSON documents
- exits.py: the one place errors become one sentence and an exit code; SIGTERM and SIGHUP
- console.py: prompts, confirmations, menus, spinners and QR codes on stderr; results on stdout
"""
