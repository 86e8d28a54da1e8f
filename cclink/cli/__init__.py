"""The command line: what a person types and sees.

- app.py: the commands (typer), their output, and the one place errors become sentences and exit codes
- console.py: prompts, confirmations, menus, spinners and QR codes on stderr; results on stdout
"""
