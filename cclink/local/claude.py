"""Claude Code's session files, and starting `claude --resume` (docs/wire.md §8)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, NoReturn

from cclink.errors import SessionError

# Only the head of a session file says where it was started; later lines are
# the conversation, which can be large and is none of our business.
CWD_LINES = 20
# Claude Code writes whole tool outputs on one line; a cwd line is far smaller.
MAX_LINE_BYTES = 1 << 20
_CHUNK = 64 * 1024
TITLE_LENGTH = 60  # characters of a session's title in the menu


@dataclass(frozen=True)
class Session:
    session_id: str
    file: Path
    project: str | None  # the cwd recorded in the file
    modified: float


def projects_dir() -> Path:
    return Path.home() / ".claude" / "projects"


def project_dir_name(path: str) -> str:
    """The folder name Claude Code uses for a working directory."""
    return "".join(c if c.isascii() and c.isalnum() else "-" for c in path)


# --- reading a session file --------------------------------------------------------


def read_session_cwd(file: Path) -> str | None:
    """The first non-empty string `cwd` among the file's first 20 JSON-object lines; never raises."""
    try:
        with open(file, "rb") as f:
            for line in _head_lines(f, CWD_LINES):
                cwd = _cwd_of_line(line)
                if cwd is not None:
                    return cwd
    except OSError:
        # The file may vanish or be unreadable; either way it names no project.
        return None
    return None


def _head_lines(f: BinaryIO, count: int) -> Iterator[bytes | None]:
    """Up to `count` lines; None stands for one too long to be worth parsing."""
    for _ in range(count):
        line = f.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            _skip_rest_of_line(f, line)
            yield None
        else:
            yield line


def _skip_rest_of_line(f: BinaryIO, read_so_far: bytes) -> None:
    # Read in chunks so a line of gigabytes never sits in memory at once.
    chunk = read_so_far
    while chunk and not chunk.endswith(b"\n"):
        chunk = f.readline(_CHUNK)


def _cwd_of_line(line: bytes | None) -> str | None:
    value = _object_of_line(line)
    cwd = value.get("cwd") if value else None
    return cwd if isinstance(cwd, str) and cwd else None


def _object_of_line(line: bytes | None) -> dict | None:
    if line is None:
        return None
    try:
        value = json.loads(line.decode("utf-8"))
    except (ValueError, RecursionError):
        # UnicodeDecodeError is a ValueError; deep nesting is a RecursionError.
        return None
    return value if isinstance(value, dict) else None


def read_session_title(file: Path) -> str | None:
    """What the conversation is about: its summary, else its first user message; one line, never raises.

    Read from the file's first lines only, like the cwd. The text is the
    session's own: whoever shows it escapes it (cclink.text.printable).
    """
    summary = first_message = None
    try:
        with open(file, "rb") as f:
            for line in _head_lines(f, CWD_LINES):
                value = _object_of_line(line)
                if value is None:
                    continue
                if summary is None and value.get("type") == "summary":
                    summary = _first_line(value.get("summary"))
                if first_message is None and value.get("type") == "user":
                    first_message = _first_line(_message_text(value.get("message")))
    except OSError:
        return None
    return summary or first_message


def _message_text(message: object) -> object:
    """A user message's text: its content string, or the first text part of a list of parts."""
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, list):
        texts = [part.get("text") for part in content if isinstance(part, dict) and part.get("type") == "text"]
        return texts[0] if texts else None
    return content


def _first_line(text: object) -> str | None:
    if not isinstance(text, str):
        return None
    line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if len(line) > TITLE_LENGTH:
        line = line[: TITLE_LENGTH - 3].rstrip() + "..."
    return line or None


# --- finding sessions --------------------------------------------------------------


def recent_sessions(cwd: Path, now: float, max_age: float = 86400) -> list[Session]:
    """Sessions modified within max_age whose project is cwd or below it, newest first."""
    base = _resolved(str(cwd))
    if base is None:
        return []
    found = []
    for file, modified in _session_files():
        if now - modified > max_age:
            continue
        project = read_session_cwd(file)
        if project is not None and _is_at_or_below(project, base):
            found.append(Session(file.stem, file, project, modified))
    return sorted(found, key=lambda s: (-s.modified, s.session_id))


def find_session(session_id: str) -> Session | None:
    """The file of a session id in any project folder; the newest when there are several."""
    if not _is_plain_name(session_id):
        return None
    name = f"{session_id}.jsonl"
    matches = []
    for folder in _project_folders():
        file = folder / name
        try:
            if file.parent != folder or not file.is_file():
                continue
            modified = file.stat().st_mtime
        except OSError:
            continue
        matches.append(Session(session_id, file, read_session_cwd(file), modified))
    return max(matches, key=lambda s: s.modified, default=None)


def _project_folders() -> Iterator[Path]:
    try:
        entries = list(os.scandir(projects_dir()))
    except OSError:
        # No ~/.claude (Claude Code never ran here) means no sessions.
        return
    for entry in entries:
        try:
            if entry.is_dir():
                yield Path(entry.path)
        except OSError:
            continue


def _session_files() -> Iterator[tuple[Path, float]]:
    """(file, mtime) of every *.jsonl directly inside a project folder."""
    for folder in _project_folders():
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if not entry.name.endswith(".jsonl") or entry.name == ".jsonl":
                continue
            try:
                if entry.is_file():
                    yield Path(entry.path), entry.stat().st_mtime
            except OSError:
                continue


def _is_plain_name(session_id: str) -> bool:
    """Whether the id can only name a file directly inside a project folder."""
    separators = {s for s in ("/", "\0", os.sep, os.altsep) if s is not None}
    return session_id not in ("", ".", "..") and not any(s in session_id for s in separators)


def _resolved(path: str) -> Path | None:
    # A relative cwd in a file would be resolved against *our* directory,
    # which says nothing about where that session ran.
    if not os.path.isabs(path):
        return None
    try:
        return Path(path).resolve()
    except (OSError, ValueError, RuntimeError):
        # ValueError: embedded NUL; RuntimeError: symlink loop on older Pythons.
        return None


def _is_at_or_below(project: str, base: Path) -> bool:
    resolved = _resolved(project)
    # Component-wise, so /a/bc is not below /a/b.
    return resolved is not None and (resolved == base or base in resolved.parents)


# --- launching Claude Code ---------------------------------------------------------


def resume_argv(session_id: str) -> list[str]:
    """The command that resumes a session: the id is glued to its option, so no id is ever read as a flag.

    Claude Code's --resume takes an optional value: in `--resume -c` the `-c`
    would be an option of its own.
    """
    if not _is_plain_name(session_id) or session_id.startswith("-"):
        raise SessionError(f"'{session_id[:80]}' is not a session id that Claude Code can be started with")
    return ["claude", f"--resume={session_id}"]


def check_can_resume(session_id: str, project: Path | None) -> None:
    """Raise SessionError unless resume() would start claude: a valid id, and claude on PATH."""
    resume_argv(session_id)
    if shutil.which("claude") is None:
        by_hand = _by_hand(session_id, _existing_dir(project))
        raise SessionError(f"the claude command was not found on PATH; install Claude Code, then run `{by_hand}`")


def resume(session_id: str, project: Path | None) -> NoReturn:
    """Replace this process with `claude --resume=<id>`, started in project when it is a directory."""
    check_can_resume(session_id, project)
    argv = resume_argv(session_id)
    where = _existing_dir(project)
    by_hand = _by_hand(session_id, where)
    if where is not None:
        os.chdir(where)
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    # Python ignores SIGPIPE, and an ignored signal stays ignored across exec.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:
        os.execvp(argv[0], argv)
    except OSError as e:
        raise SessionError(f"claude could not be started ({e.strerror or e}); run `{by_hand}` yourself") from None


def _existing_dir(project: Path | None) -> Path | None:
    return Path(project) if project is not None and Path(project).is_dir() else None


def _by_hand(session_id: str, where: Path | None) -> str:
    command = f"claude --resume {shlex.quote(session_id)}"
    return f"cd {shlex.quote(str(where))} && {command}" if where is not None else command
