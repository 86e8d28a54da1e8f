"""The `cclink` executable (and `python -m cclink`).

`--version` (or `-V`, whatever follows) is answered here, before the CLI
loads: importing typer alone takes longer than everything else that command
does.
"""

import os
import sys


def main() -> None:
    if sys.argv[1:2] in (["--version"], ["-V"]):
        from cclink import __version__

        try:
            print(f"cclink {__version__}", flush=True)
        except OSError:
            # Nobody reads stdout any more (`cclink --version | true`): leave quietly,
            # and give Python's own flush at exit somewhere to write.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(1)
        return
    from cclink.cli.app import main as run_cli

    run_cli()


if __name__ == "__main__":
    main()
