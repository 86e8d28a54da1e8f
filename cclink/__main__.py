"""The `cclink` executable (and `python -m cclink`).

`--version` is answered here, before the CLI loads: importing typer alone
takes longer than everything else that command does.
"""

import sys


def main() -> None:
    if sys.argv[1:] == ["--version"]:
        from cclink import __version__

        print(f"cclink {__version__}")
        return
    from cclink.cli import main as run_cli

    run_cli()


if __name__ == "__main__":
    main()
