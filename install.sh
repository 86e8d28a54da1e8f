#!/usr/bin/env bash
# Install cclink from the directory this script is in, into an isolated environment:
#   - with pipx when it is on PATH (pipx install --force <dir>);
#   - otherwise into a venv at ~/.local/share/cclink/venv, with a `cclink` link in ~/.local/bin.
# Running it again reinstalls from the same directory and upgrades the dependencies.
# Everything it downloads comes from PyPI, through pip.
#
# Usage: ./install.sh [--venv] [--run ARGS...]
#   --venv         use the venv even when pipx is available
#   --run ARGS...  then run the installed `cclink ARGS...` (the shell may not find `cclink` yet:
#                  ~/.local/bin need not be on PATH), e.g. ./install.sh --run demo
# Environment: PYTHON=/path/to/python3.x picks the interpreter (default: python3).
set -euo pipefail

say() { printf 'install.sh: %s\n' "$*"; }
die() { printf 'install.sh: error: %s\n' "$*" >&2; exit 1; }

use_pipx=auto
run=no
while [ $# -gt 0 ]; do
    case "$1" in
        --venv) use_pipx=no ;;
        --run) run=yes; shift; break ;;
        -h | --help) sed -n '2,12s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) die "unknown argument '$1' (try --help)" ;;
    esac
    shift
done

src=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[ -f "$src/pyproject.toml" ] || die "$src has no pyproject.toml; run install.sh from a cclink checkout"

[ -n "${HOME:-}" ] && [ -d "$HOME" ] || die "HOME must name your home directory (it is '${HOME:-}')"
data_dir="$HOME/.local/share/cclink"
venv="$data_dir/venv"
bin_dir="$HOME/.local/bin"

# --- Python ------------------------------------------------------------------------
python=${PYTHON:-python3}
python_path=$(command -v "$python" || true)
[ -n "$python_path" ] || die "$python was not found; cclink needs Python 3.10 or newer (set PYTHON=/path/to/python3.x to pick one)"
python_version=$("$python_path" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null) \
    || die "$python_path does not run"
if ! "$python_path" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)'; then
    die "cclink needs Python 3.10 or newer; $python_path is $python_version (install a newer Python, or set PYTHON=/path/to/python3.x)"
fi

# Our own link, if an earlier venv install made one.
our_link() { [ -L "$bin_dir/cclink" ] && [ "$(readlink "$bin_dir/cclink")" = "$venv/bin/cclink" ]; }

# pip builds in the source tree; setuptools never removes files from an old build/,
# so a module deleted from the checkout would come back from there.
rm -rf "$src/build"

if [ "$use_pipx" = auto ]; then
    if command -v pipx >/dev/null 2>&1; then use_pipx=yes; else use_pipx=no; fi
fi

if [ "$use_pipx" = yes ]; then
    # --- pipx ------------------------------------------------------------------------
    if our_link; then
        say "removing the earlier venv install ($venv) in favour of pipx"
        rm -f "$bin_dir/cclink"
        rm -rf "$venv"
        rmdir "$data_dir" 2>/dev/null || true
    fi
    if pipx list --short 2>/dev/null | grep -q '^cclink '; then
        # pipx ignores --python when reinstalling over an existing environment.
        say "reinstalling $src with pipx"
        pipx install --force "$src"
    else
        say "installing $src with pipx (Python $python_version)"
        pipx install --force --python "$python_path" "$src"
    fi
    bin_dir=$(pipx environment --value PIPX_BIN_DIR 2>/dev/null || printf '%s' "${PIPX_BIN_DIR:-$HOME/.local/bin}")
    command_path="$bin_dir/cclink"
    how="with pipx"
else
    # --- venv ------------------------------------------------------------------------
    "$python_path" -c 'import venv, ensurepip' 2>/dev/null \
        || die "$python_path cannot create virtual environments (on Debian or Ubuntu: apt-get install python3-venv)"
    if [ -e "$bin_dir/cclink" ] && ! our_link; then
        die "$bin_dir/cclink already exists and was not made by this script (from pipx? then \`pipx uninstall cclink\`); remove it, then rerun"
    fi
    # Reuse the venv when it still runs on the same Python version; otherwise build it anew.
    if [ -x "$venv/bin/python" ] \
        && [ "$("$venv/bin/python" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null)" = "$python_version" ]; then
        say "reusing the virtual environment $venv"
    else
        rm -rf "$venv"
        mkdir -p "$data_dir"
        say "creating a virtual environment in $venv (Python $python_version)"
        "$python_path" -m venv "$venv"
        # The pip bundled with Python 3.10.0 copies the whole source tree before building.
        PIP_DISABLE_PIP_VERSION_CHECK=1 "$venv/bin/python" -m pip install --quiet --upgrade pip
    fi
    say "installing $src and its dependencies with pip"
    # Quiet, but pip still prints warnings and errors.
    PIP_DISABLE_PIP_VERSION_CHECK=1 "$venv/bin/python" -m pip install --quiet --upgrade "$src"
    mkdir -p "$bin_dir"
    ln -sfn "$venv/bin/cclink" "$bin_dir/cclink"
    say "linked $bin_dir/cclink -> $venv/bin/cclink"
    command_path="$bin_dir/cclink"
    how="in $venv"
fi

# --- check and report ------------------------------------------------------------------
"$command_path" --help >/dev/null || die "the installed $command_path does not run"
version=$(cd / && "$(dirname "$(readlink -f "$command_path")")/python" -c 'import cclink; print(cclink.__version__)' 2>/dev/null || true)
say "installed cclink${version:+ $version} $how; the command is $command_path"

case ":$PATH:" in
    *":$bin_dir:"*) [ "$run" = yes ] || say "next: cclink demo" ;;
    *)
        say "warning: $bin_dir is not on your PATH, so the shell will not find \`cclink\` yet."
        say "add this line to ~/.profile (or ~/.bashrc, ~/.zshrc), then open a new shell:"
        case "$bin_dir" in
            "$HOME"/*) shown="\$HOME${bin_dir#"$HOME"}" ;;
            *) shown=$bin_dir ;;
        esac
        # shellcheck disable=SC2016 # $PATH is meant literally: it is the line to add
        printf '\n    export PATH="%s:$PATH"\n\n' "$shown"
        say "or run it by its full path: $command_path demo"
        ;;
esac

if [ "$run" = yes ]; then
    exec "$command_path" "$@"
fi
