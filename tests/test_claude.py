from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cclink.errors import SessionError
from cclink.local import claude

NOW = 1_700_000_000.0
SID = "3f2b9c1e-7a44-4d1b-9e0f-0123456789ab"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


def write_session(
    home: Path,
    project: str,
    session_id: str,
    *,
    age: float = 60,
    lines: list[bytes] | None = None,
    folder: str | None = None,
) -> Path:
    """A session file as Claude Code writes it, modified `age` seconds before NOW."""
    directory = home / ".claude" / "projects" / (folder or claude.project_dir_name(project))
    directory.mkdir(parents=True, exist_ok=True)
    file = directory / f"{session_id}.jsonl"
    if lines is None:
        lines = [json.dumps({"type": "user", "cwd": project, "sessionId": session_id}).encode()]
    file.write_bytes(b"".join(line + b"\n" for line in lines))
    os.utime(file, (NOW - age, NOW - age))
    return file


# --- names and paths ----------------------------------------------------------------


def test_projects_dir_follows_home(home: Path) -> None:
    assert claude.projects_dir() == home / ".claude" / "projects"


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/home/me/my.app", "-home-me-my-app"),
        ("/home/me/my_app v2", "-home-me-my-app-v2"),
        ("/tmp/caf\u00e9/\u65e5", "-tmp-caf---"),
        ("C:\\Users\\me", "C--Users-me"),
        ("", ""),
    ],
)
def test_project_dir_name(path: str, name: str) -> None:
    assert claude.project_dir_name(path) == name


# --- read_session_cwd ---------------------------------------------------------------


def cwd_of(tmp_path: Path, content: bytes) -> str | None:
    file = tmp_path / "s.jsonl"
    file.write_bytes(content)
    return claude.read_session_cwd(file)


def test_cwd_from_first_line(tmp_path: Path) -> None:
    assert cwd_of(tmp_path, b'{"cwd":"/p","type":"user"}\n{"cwd":"/q"}\n') == "/p"


def test_cwd_after_garbage_lines(tmp_path: Path) -> None:
    content = b"\n".join(
        [
            b"not json",
            b"",
            b"[1,2,3]",
            b'"a string"',
            b'{"type":"summary","summary":"x"}',
            b'{"cwd":""}',
            b'{"cwd":42}',
            b'{"cwd":null}',
            b"\xff\xfe\x00 not utf-8",
            b'{"cwd":"/half',
            b"[" * 100_000,
            b'{"cwd":"/home/me/app","type":"user"}',
        ]
    )
    assert cwd_of(tmp_path, content) == "/home/me/app"


def test_cwd_with_non_ascii_and_no_final_newline(tmp_path: Path) -> None:
    assert cwd_of(tmp_path, '{"cwd":"/tmp/caf\u00e9"}'.encode()) == "/tmp/caf\u00e9"


def test_cwd_only_in_first_twenty_lines(tmp_path: Path) -> None:
    filler = b'{"type":"summary"}\n'
    assert cwd_of(tmp_path, filler * 19 + b'{"cwd":"/p"}\n') == "/p"
    assert cwd_of(tmp_path, filler * 20 + b'{"cwd":"/p"}\n') is None


def test_huge_line_is_skipped_and_counts_as_one(tmp_path: Path) -> None:
    huge = b'{"cwd":"/wrong","pad":"' + b"x" * (3 * claude.MAX_LINE_BYTES) + b'"}\n'
    assert cwd_of(tmp_path, huge + b'{"cwd":"/right"}\n') == "/right"


def test_line_just_under_the_limit_is_parsed(tmp_path: Path) -> None:
    head = b'{"cwd":"/p","pad":"'
    line = head + b"x" * (claude.MAX_LINE_BYTES - len(head) - 2) + b'"}'
    assert len(line) == claude.MAX_LINE_BYTES
    assert cwd_of(tmp_path, line + b"\n") == "/p"


@pytest.mark.parametrize("content", [b"", b"\n\n\n", b"\x00" * 5000, b'{"cwd":"/p"'])
def test_no_cwd(tmp_path: Path, content: bytes) -> None:
    assert cwd_of(tmp_path, content) is None


def test_missing_file_has_no_cwd(tmp_path: Path) -> None:
    assert claude.read_session_cwd(tmp_path / "absent.jsonl") is None


# --- recent_sessions ------------------------------------------------------------------


# --- what a session was about -------------------------------------------------------------


def lines_of(*objects: object) -> bytes:
    return b"".join(json.dumps(o).encode() + b"\n" if not isinstance(o, bytes) else o for o in objects)


USER = {"type": "user", "message": {"role": "user", "content": "Fix the flaky upload test"}}


@pytest.mark.parametrize(
    ("content", "title"),
    [
        (lines_of({"type": "summary", "summary": "Rename the loader"}, USER), "Rename the loader"),
        (lines_of(b"not json\n", [1, 2], USER), "Fix the flaky upload test"),
        (
            lines_of({"type": "user", "message": {"content": [{"type": "image"}, {"type": "text", "text": "Why?"}]}}),
            "Why?",
        ),
        (lines_of({"type": "user", "message": {"content": "\n\n  first line  \nsecond"}}), "first line"),
        (lines_of({"type": "user", "message": {"content": "x" * 100}}), "x" * 57 + "..."),
        (lines_of({"type": "summary", "summary": 7}, {"type": "user", "message": "plain"}), None),
        (lines_of(*([{"type": "assistant"}] * claude.CWD_LINES), USER), None),
        (b"", None),
    ],
    ids=["summary-first", "after-garbage", "text-part", "first-line", "cut", "wrong-types", "too-late", "empty"],
)
def test_a_sessions_title_is_its_summary_or_first_user_message(tmp_path: Path, content: bytes, title: str) -> None:
    file = tmp_path / "s.jsonl"
    file.write_bytes(content)
    assert claude.read_session_title(file) == title


def test_a_missing_session_has_no_title(tmp_path: Path) -> None:
    assert claude.read_session_title(tmp_path / "gone.jsonl") is None


def test_missing_claude_dir(home: Path) -> None:
    assert claude.recent_sessions(home, NOW) == []


def test_newest_first_with_age_cutoff(home: Path) -> None:
    project = home / "app"
    project.mkdir()
    write_session(home, str(project), "old", age=86400 + 1)
    write_session(home, str(project), "a", age=3600)
    write_session(home, str(project), "b", age=10)
    write_session(home, str(project), "c", age=86400)

    sessions = claude.recent_sessions(project, NOW)

    assert [s.session_id for s in sessions] == ["b", "a", "c"]
    assert sessions[0] == claude.Session(
        "b", claude.projects_dir() / claude.project_dir_name(str(project)) / "b.jsonl", str(project), NOW - 10
    )
    assert [s.session_id for s in claude.recent_sessions(project, NOW, max_age=60)] == ["b"]


def test_cwd_and_below_but_not_sibling_prefix(home: Path) -> None:
    write_session(home, "/a/b", "same")
    write_session(home, "/a/b/c/d", "below")
    write_session(home, "/a/bc", "prefix-only")
    write_session(home, "/a", "above")
    write_session(home, "/x/b", "elsewhere")

    found = {s.session_id for s in claude.recent_sessions(Path("/a/b"), NOW)}

    assert found == {"same", "below"}


def test_project_is_read_from_the_file_not_the_folder_name(home: Path) -> None:
    # The folder name is lossy (my.app and my-app collide), so it must not be decoded.
    write_session(home, "/srv/my.app", "dotted", folder="-srv-my-app")
    write_session(home, "/srv/my-app", "dashed", folder="-srv-my-app")

    assert [s.session_id for s in claude.recent_sessions(Path("/srv/my-app"), NOW)] == ["dashed"]
    assert [s.project for s in claude.recent_sessions(Path("/srv/my.app"), NOW)] == ["/srv/my.app"]


def test_garbage_before_cwd_line(home: Path) -> None:
    lines = [b"garbage", b'{"type":"summary"}', json.dumps({"cwd": "/w/app"}).encode()]
    write_session(home, "/w/app", "s", lines=lines)
    assert [s.session_id for s in claude.recent_sessions(Path("/w/app"), NOW)] == ["s"]


def test_sessions_without_usable_cwd_are_skipped(home: Path) -> None:
    write_session(home, "/w", "no-cwd", lines=[b'{"type":"summary"}'])
    write_session(home, "/w", "relative", lines=[b'{"cwd":"w/app"}'])
    write_session(home, "/w", "nul", lines=[b'{"cwd":"/w/a\\u0000b"}'])
    write_session(home, "/w", "empty", lines=[])
    write_session(home, "/w", "ok")
    assert [s.session_id for s in claude.recent_sessions(Path("/w"), NOW)] == ["ok"]


def test_symlinked_cwd_matches_its_target(home: Path, tmp_path: Path) -> None:
    real = tmp_path / "real" / "app"
    real.mkdir(parents=True)
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "real")
    write_session(home, str(real), "s")
    assert [s.session_id for s in claude.recent_sessions(link / "app", NOW)] == ["s"]


def test_only_jsonl_files_directly_in_project_folders(home: Path) -> None:
    file = write_session(home, "/w", "ok")
    folder = file.parent
    (folder / "notes.txt").write_text(json.dumps({"cwd": "/w"}))
    nested = folder / "sub"
    nested.mkdir()
    (nested / "deep.jsonl").write_text(json.dumps({"cwd": "/w"}) + "\n")
    (folder / "dir.jsonl").mkdir()
    (claude.projects_dir() / "stray.jsonl").write_text(json.dumps({"cwd": "/w"}) + "\n")
    for path in (folder / "notes.txt", nested / "deep.jsonl", claude.projects_dir() / "stray.jsonl"):
        os.utime(path, (NOW, NOW))
    assert [s.session_id for s in claude.recent_sessions(Path("/w"), NOW)] == ["ok"]


def test_projects_path_is_a_file(home: Path) -> None:
    (home / ".claude").mkdir()
    (home / ".claude" / "projects").write_text("not a directory")
    assert claude.recent_sessions(Path("/"), NOW) == []


# --- find_session ------------------------------------------------------------------------


def test_find_session_in_any_folder(home: Path) -> None:
    write_session(home, "/w/one", "other")
    file = write_session(home, "/w/two", SID)
    assert claude.find_session(SID) == claude.Session(SID, file, "/w/two", NOW - 60)


def test_find_session_newest_of_several(home: Path) -> None:
    write_session(home, "/w/one", SID, age=100)
    newer = write_session(home, "/w/two", SID, age=5)
    found = claude.find_session(SID)
    assert found is not None and found.file == newer and found.project == "/w/two"


def test_find_session_without_cwd_in_file(home: Path) -> None:
    file = write_session(home, "/w", SID, lines=[b"garbage"])
    assert claude.find_session(SID) == claude.Session(SID, file, None, NOW - 60)


def test_find_session_absent(home: Path) -> None:
    assert claude.find_session(SID) is None
    write_session(home, "/w", "other")
    assert claude.find_session(SID) is None


@pytest.mark.parametrize("bad", ["", ".", "..", "../x", "a/b", "..\\x" if os.sep == "\\" else "a\0b"])
def test_find_session_never_leaves_projects_dir(home: Path, bad: str) -> None:
    # A file that a path-escaping id would reach, were it ever joined blindly.
    write_session(home, "/w", "x")
    (home / ".claude" / "x.jsonl").write_text('{"cwd":"/w"}\n')
    (home / ".claude" / "projects" / ".jsonl").write_text('{"cwd":"/w"}\n')
    assert claude.find_session(bad) is None


# --- resume -------------------------------------------------------------------------------

FAKE_CLAUDE = """\
#!{python}
import json, os, sys
with open({record!r}, "w") as f:
    json.dump({{"argv": sys.argv[1:], "name": os.path.basename(sys.argv[0]), "cwd": os.getcwd()}}, f)
print("fake claude ran")
"""


@pytest.fixture
def fake_claude(tmp_path: Path) -> tuple[Path, Path]:
    """(directory to put on PATH, file the fake writes its argv and cwd to)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "claude-ran.json"
    script = bin_dir / "claude"
    script.write_text(FAKE_CLAUDE.format(python=sys.executable, record=str(record)))
    script.chmod(0o755)
    return bin_dir, record


def run_resume(session_id: str, project: str | None, *, path: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    code = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from cclink.local import claude
        from cclink.errors import CclinkError
        print("before exec")
        project = {project!r}
        try:
            claude.resume({session_id!r}, None if project is None else Path(project))
        except CclinkError as e:
            print(type(e).__name__ + ": " + str(e), file=sys.stderr)
            sys.exit(e.exit_code)
        """
    )
    env = dict(os.environ, PATH=path)
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True, timeout=60)


def test_resume_execs_claude_in_project(tmp_path: Path, fake_claude: tuple[Path, Path]) -> None:
    bin_dir, record = fake_claude
    project = tmp_path / "my project"
    project.mkdir()
    result = run_resume(SID, str(project), path=f"{bin_dir}{os.pathsep}/usr/bin:/bin", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # Output written before exec is flushed, not lost with the replaced process.
    assert result.stdout == "before exec\nfake claude ran\n"
    ran = json.loads(record.read_text())
    assert ran == {"argv": [f"--resume={SID}"], "name": "claude", "cwd": str(project.resolve())}


@pytest.mark.parametrize("project", [None, "/nonexistent/cclink-test-project"])
def test_resume_stays_put_without_a_project_directory(
    tmp_path: Path, fake_claude: tuple[Path, Path], project: str | None
) -> None:
    bin_dir, record = fake_claude
    here = tmp_path / "here"
    here.mkdir()
    result = run_resume(SID, project, path=str(bin_dir), cwd=here)
    assert result.returncode == 0, result.stderr
    assert json.loads(record.read_text())["cwd"] == str(here.resolve())


def test_resume_without_claude_on_path(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    project = tmp_path / "app"
    project.mkdir()
    result = run_resume(SID, str(project), path=str(empty), cwd=tmp_path)
    assert result.returncode == SessionError.exit_code
    assert result.stdout == "before exec\n"
    assert "SessionError: the claude command was not found on PATH" in result.stderr
    assert f"cd {project} && claude --resume {SID}" in result.stderr


def test_resume_error_in_process_leaves_cwd_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    before = os.getcwd()
    with pytest.raises(SessionError) as caught:
        claude.resume(SID, tmp_path)
    assert os.getcwd() == before
    assert f"claude --resume {SID}" in str(caught.value)


@pytest.mark.parametrize("session_id", ["-c", "--continue", "--dangerously-skip-permissions", "../x", ""])
def test_resume_refuses_what_could_be_read_as_a_flag_or_path(
    tmp_path: Path, fake_claude: tuple[Path, Path], session_id: str
) -> None:
    bin_dir, record = fake_claude
    result = run_resume(session_id, None, path=str(bin_dir), cwd=tmp_path)
    assert result.returncode == SessionError.exit_code
    assert "is not a session id that Claude Code can be started with" in result.stderr
    assert not record.exists()


def test_resume_glues_the_id_to_its_option() -> None:
    assert claude.resume_argv(SID) == ["claude", f"--resume={SID}"]
