"""The session archive of --carry: packing, hostile archives, and the cwd rewrite."""

from __future__ import annotations

import io
import json
import re
import tarfile
from pathlib import Path

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st
from support.archives import HOSTILE, SESSION, SESSION_FILE, padded, pax, raw_archive, raw_header, raw_member, zstd

from cclink.errors import CclinkError, MalformedArchive, NoSpace
from cclink.wire import archive

LIMIT = 1 << 30


def copy(source, out) -> None:
    out.write(source.read())


def make_session(folder: Path, *, directory: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    file = folder / f"{SESSION}.jsonl"
    file.write_text('{"cwd":"/home/a/app","type":"user"}\n{"type":"assistant"}\n')
    if directory:
        (folder / SESSION / "subagents").mkdir(parents=True)
        (folder / SESSION / "subagents" / "agent-1.jsonl").write_text('{"cwd":"/home/a/app"}\n')
    return file


def decompressed(source: io.BytesIO) -> io.BytesIO:
    return io.BytesIO(zstandard.ZstdDecompressor().stream_reader(source).read())


def packed(file: Path) -> io.BytesIO:
    out = io.BytesIO()
    archive.pack(file, out)
    out.seek(0)
    return out


def hostile_archive(*members: tuple[tarfile.TarInfo, bytes]) -> io.BytesIO:
    raw = io.BytesIO()
    with (
        zstandard.ZstdCompressor().stream_writer(raw, closefd=False) as compressed,
        tarfile.open(fileobj=compressed, mode="w|") as tar,
    ):
        for info, data in members:
            info.size = len(data) if info.isfile() else 0
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    raw.seek(0)
    return raw


def member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


# --- round trip ----------------------------------------------------------------------------


def test_a_session_and_its_directory_survive_pack_and_unpack(tmp_path):
    file = make_session(tmp_path / "src")
    staging = tmp_path / "staging"
    staging.mkdir()

    unpacked = archive.unpack(packed(file), SESSION, staging, copy, limit=LIMIT)

    assert unpacked.session_file.read_bytes() == file.read_bytes()
    assert (unpacked.directory / "subagents" / "agent-1.jsonl").read_text() == '{"cwd":"/home/a/app"}\n'
    assert unpacked.session_file.stat().st_mode & 0o777 == 0o600


def test_a_session_without_a_directory_packs_alone(tmp_path):
    file = make_session(tmp_path / "src", directory=False)
    with tarfile.open(fileobj=decompressed(packed(file)), mode="r|") as tar:
        assert [m.name for m in tar] == [f"{SESSION}.jsonl"]


def test_the_archive_names_no_owner(tmp_path):
    file = make_session(tmp_path / "src")
    with tarfile.open(fileobj=decompressed(packed(file)), mode="r|") as tar:
        for info in tar:
            assert (info.uid, info.gid, info.uname, info.gname) == (0, 0, "", "")


def test_links_beside_the_session_are_left_out(tmp_path):
    file = make_session(tmp_path / "src")
    (tmp_path / "secret").write_text("not for the archive")
    (file.parent / SESSION / "link").symlink_to(tmp_path / "secret")
    with tarfile.open(fileobj=decompressed(packed(file)), mode="r|") as tar:
        names = [m.name for m in tar]
    assert f"{SESSION}/link" not in names


# --- hostile archives ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        member("../escape.jsonl"),
        member(f"{SESSION}/../../escape"),
        member("/etc/passwd"),
        member("other-session.jsonl"),
        member(f"{SESSION}.jsonl/x"),
        member(f"{SESSION}/./x"),
        member(f"{SESSION}/link", tarfile.SYMTYPE, "/etc/passwd"),
        member(f"{SESSION}/hard", tarfile.LNKTYPE, f"{SESSION}.jsonl"),
        member(f"{SESSION}/fifo", tarfile.FIFOTYPE),
        member(f"{SESSION}/dev", tarfile.CHRTYPE),
    ],
    ids=lambda info: f"{info.name}-{info.type!r}",
)
def test_anything_but_the_sessions_own_files_is_refused(tmp_path, bad):
    staging = tmp_path / "staging"
    staging.mkdir()
    source = hostile_archive((member(f"{SESSION}.jsonl"), b"{}\n"), (bad, b"x"))

    with pytest.raises(MalformedArchive):
        archive.unpack(source, SESSION, staging, copy, limit=LIMIT)

    assert not (tmp_path / "escape.jsonl").exists() and not (tmp_path / "escape").exists()
    assert not any(p.is_symlink() for p in staging.rglob("*"))


def test_an_archive_without_the_session_file_is_refused(tmp_path):
    staging = tmp_path / "staging"
    staging.mkdir()
    source = hostile_archive((member(f"{SESSION}/notes.txt"), b"x"))
    with pytest.raises(MalformedArchive, match="does not hold session"):
        archive.unpack(source, SESSION, staging, copy, limit=LIMIT)


def test_an_archive_unpacking_past_the_limit_is_refused_before_it_is_written(tmp_path):
    staging = tmp_path / "staging"
    staging.mkdir()
    bomb = hostile_archive((member(f"{SESSION}.jsonl"), b"{}\n"), (member(f"{SESSION}/zeros"), bytes(4 << 20)))
    assert len(bomb.getvalue()) < 4096  # what arrives is small; what it unpacks to is not

    with pytest.raises(NoSpace):
        archive.unpack(bomb, SESSION, staging, copy, limit=1 << 20)

    assert not (staging / SESSION / "zeros").exists()


def test_the_limit_counts_every_file_together(tmp_path):
    staging = tmp_path / "staging"
    staging.mkdir()
    files = [(member(f"{SESSION}.jsonl"), b"{}\n")] + [(member(f"{SESSION}/part{i}"), bytes(300_000)) for i in range(4)]

    with pytest.raises(NoSpace):
        archive.unpack(hostile_archive(*files), SESSION, staging, copy, limit=1_000_000)
    assert archive.unpack(hostile_archive(*files), SESSION, tmp_path, copy, limit=1_300_000).session_file.exists()


# --- hostile archives: bounds on headers, members and bytes written ----------------------------


def unpack_into(tmp_path: Path, source: io.BytesIO, **options) -> archive.Unpacked:
    staging = tmp_path / "staging"
    staging.mkdir(parents=True)
    return archive.unpack(source, SESSION, staging, copy, **{"limit": LIMIT, **options})


@pytest.mark.parametrize(
    "kind", [tarfile.XHDTYPE, tarfile.SOLARIS_XHDTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK], ids=repr
)
def test_a_name_or_extended_header_larger_than_any_name_is_refused(tmp_path, kind):
    # tarfile reads such a body into memory whole: 16 MiB here, gigabytes for a few bytes of zstd.
    source = raw_archive(raw_header("././@LongLink", kind, 16 << 20), bytes(16 << 20), SESSION_FILE)

    with pytest.raises(MalformedArchive, match="tar header of 16777216 bytes"):
        unpack_into(tmp_path, source)


def test_a_long_chain_of_extended_headers_is_refused(tmp_path):
    header = raw_member("././@PaxHeader", pax(path=f"{SESSION}.jsonl"), tarfile.XHDTYPE)
    source = raw_archive(header * 5000, SESSION_FILE)  # tarfile follows each to the next by recursion

    with pytest.raises(MalformedArchive, match="headers in a row"):
        unpack_into(tmp_path, source)


def test_a_global_header_is_refused(tmp_path):
    source = raw_archive(raw_member("pax_global_header", pax(comment="x" * 100), tarfile.XGLTYPE), SESSION_FILE)
    with pytest.raises(MalformedArchive, match="global tar header"):
        unpack_into(tmp_path, source)


def gnu_sparse_member() -> bytes:
    """An old-style GNU sparse member: one 3-byte piece at offset 0 of a 3-byte file."""
    header = bytearray(raw_header(f"{SESSION}.jsonl", tarfile.GNUTYPE_SPARSE, 512))
    header[386:410] = tarfile.itn(0, 12, tarfile.GNU_FORMAT) + tarfile.itn(3, 12, tarfile.GNU_FORMAT)
    header[483:495] = tarfile.itn(3, 12, tarfile.GNU_FORMAT)
    header[148:156] = b"        "
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header) + padded(b"{}\n")


SPARSE = {
    "gnu-old": gnu_sparse_member(),
    "pax-0.0": raw_member(
        "././@PaxHeader",
        pax(
            **{
                "GNU.sparse.size": "3",
                "GNU.sparse.numblocks": "1",
                "GNU.sparse.offset": "0",
                "GNU.sparse.numbytes": "3",
            }
        ),
        tarfile.XHDTYPE,
    )
    + SESSION_FILE,
    "pax-0.1": raw_member("././@PaxHeader", pax(**{"GNU.sparse.size": "3", "GNU.sparse.map": "0,3"}), tarfile.XHDTYPE)
    + SESSION_FILE,
    "pax-1.0": raw_member(
        "././@PaxHeader",
        pax(
            **{
                "GNU.sparse.major": "1",
                "GNU.sparse.minor": "0",
                "GNU.sparse.name": f"{SESSION}.jsonl",
                "GNU.sparse.realsize": "3",
            }
        ),
        tarfile.XHDTYPE,
    )
    + raw_member(f"{SESSION}/GNUSparseFile.0/x", padded(b"1\n0\n3\n") + b"{}\n"),
    "pax-realsize": raw_member("././@PaxHeader", pax(**{"GNU.sparse.realsize": "3"}), tarfile.XHDTYPE) + SESSION_FILE,
}


@pytest.mark.parametrize("sparse", SPARSE.values(), ids=SPARSE.keys())
def test_sparse_members_are_refused(tmp_path, sparse):
    with pytest.raises(MalformedArchive, match="sparse"):
        unpack_into(tmp_path, raw_archive(sparse))


def test_every_member_counts_against_the_limit_even_when_empty(tmp_path):
    empty_files = b"".join(raw_member(f"{SESSION}/{i}") for i in range(2000))

    with pytest.raises(NoSpace):
        unpack_into(tmp_path, raw_archive(SESSION_FILE, empty_files), limit=1_000_000)


def test_the_number_of_members_has_a_cap_of_its_own(tmp_path):
    source = raw_archive(SESSION_FILE, *(raw_member(f"{SESSION}/{i}") for i in range(30)))

    with pytest.raises(MalformedArchive, match="more than 20 files and directories"):
        unpack_into(tmp_path, source, max_members=20)
    source.seek(0)
    assert unpack_into(tmp_path / "again", source, max_members=31).session_file.exists()


def test_what_the_cwd_rewrite_adds_counts_against_the_limit(tmp_path):
    transcript = b'{"cwd":"/a"}\n' * 20_000  # 260 KB that the rewrite makes 2.2 MB
    source = raw_archive(raw_member(f"{SESSION}.jsonl", transcript))
    longer = "/" + "b" * 99

    def rewrite(src, out):
        archive.replace_cwd(src, out, "/a", longer)

    staging = tmp_path / "staging"
    staging.mkdir()
    with pytest.raises(NoSpace):
        archive.unpack(source, SESSION, staging, rewrite, limit=1_000_000)
    assert sum(p.stat().st_size for p in staging.rglob("*") if p.is_file()) <= 1_000_000


@pytest.mark.parametrize("pieces", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_members_are_malformed_archives_not_internal_errors(tmp_path, pieces):
    with pytest.raises(MalformedArchive):
        unpack_into(tmp_path, raw_archive(*pieces))


@pytest.mark.parametrize(
    "data", [b"", b"not zstd at all", zstd(b"not a tar stream" * 100), zstd(b"\0" * 10)[:-5], zstd(b"\0" * 10240)]
)
def test_garbage_is_a_malformed_archive(tmp_path, data):
    staging = tmp_path / "staging"
    staging.mkdir()
    with pytest.raises(MalformedArchive):
        archive.unpack(io.BytesIO(data), SESSION, staging, copy, limit=LIMIT)


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_only_ever_raise_our_own_errors(tmp_path_factory, data):
    staging = tmp_path_factory.mktemp("staging")
    try:
        archive.unpack(io.BytesIO(zstd(data)), SESSION, staging, copy, limit=LIMIT)
    except CclinkError:
        pass


# --- the cwd rewrite ----------------------------------------------------------------------------


def rewrite(data: bytes, old: str, new: str, chunk_size: int = archive.CHUNK) -> bytes:
    out = io.BytesIO()
    archive.replace_cwd(io.BytesIO(data), out, old, new, chunk_size)
    return out.getvalue()


def test_only_cwd_values_at_or_below_the_old_path_change():
    lines = [
        {"cwd": "/home/a/app", "text": "see /home/a/app"},
        {"cwd": "/home/a/app/src"},
        {"cwd": "/home/a/apple"},
        {"cwd": "/home/a"},
        {"tool": {"cwd": "/home/a/app"}},
    ]
    data = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines).encode()

    result = [json.loads(line) for line in rewrite(data, "/home/a/app", "/srv/b").splitlines()]

    assert result == [
        {"cwd": "/srv/b", "text": "see /home/a/app"},
        {"cwd": "/srv/b/src"},
        {"cwd": "/home/a/apple"},
        {"cwd": "/home/a"},
        {"tool": {"cwd": "/srv/b"}},
    ]


def test_paths_with_characters_json_escapes_are_matched_as_written():
    old = 'C:\\Users\\a "b"/app'
    data = (json.dumps({"cwd": old}, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
    assert json.loads(rewrite(data, old, "/x")) == {"cwd": "/x"}


paths = st.text(alphabet="/abc-é", min_size=1, max_size=12).map(lambda s: "/" + s)


@settings(max_examples=200, deadline=None)
@given(
    old=paths,
    new=paths,
    pieces=st.lists(st.sampled_from(["cwd", '"cwd":"', "/", '"', "x", "\n", "é", "{", "}"]) | paths, max_size=40),
)
def test_rewriting_back_restores_the_original_whatever_the_chunk_boundaries(old, new, pieces):
    """Undo is exact unless the new path already appeared as a cwd before the rewrite."""
    text = "".join(pieces).replace("OLD", old)
    data = text.encode() + ('{"cwd":"' + old + '"}\n').encode()
    forward = rewrite(data, old, new, chunk_size=3)  # matches straddle chunk boundaries
    assert forward.count(b'"cwd":"' + new.encode()) >= 1
    if b'"cwd":"' + new.encode() not in data and new not in old and old not in new:
        assert rewrite(forward, new, old, chunk_size=5) == data


@settings(max_examples=300, deadline=None)
@given(
    old=paths,
    new=paths,
    pieces=st.lists(st.sampled_from(['"cwd":"OLD', "OLD", '"cwd":"', "/", '"', "c", "\n", "é"]) | paths, max_size=30),
    chunk_size=st.integers(min_value=1, max_value=40),
)
def test_the_rewrite_is_a_regex_substitution_wherever_chunks_end(old, new, pieces, chunk_size):
    data = "".join(pieces).replace("OLD", old).encode()
    pattern = re.escape(b'"cwd":"' + old.encode()) + b'(?=["/])'
    expected = re.sub(pattern, lambda _: b'"cwd":"' + new.encode(), data)
    assert rewrite(data, old, new, chunk_size) == expected


def test_rewrite_streams_through_lines_longer_than_a_chunk():
    line = b'{"cwd":"/home/a/app","big":"' + b"x" * 10_000 + b'"}\n'
    assert rewrite(line * 3, "/home/a/app", "/n", chunk_size=64) == line.replace(b"/home/a/app", b"/n") * 3
