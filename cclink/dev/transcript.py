"""A synthetic Claude Code transcript for the benchmarks (scripts/carrybench.py, cclink.dev.netlab --carry).

JSONL shaped like Claude Code's: assistant text and large tool results, a
uuid chain, a cwd and the session id on every line. It compresses about
fivefold with zstd at cclink's level, as transcripts of code and prose do.
"""

from __future__ import annotations

import json
import random
import uuid
from pathlib import Path

WORDS = [
    "the", "a", "function", "test", "error", "file", "return", "value", "import",
    "class", "def", "self", "config", "build", "run", "pytest", "assert",
]  # fmt: skip


def write_transcript(path: Path, project: str, session_id: str, size: int) -> None:
    """About `size` bytes of transcript at path, written in a stream (the same bytes for the same size)."""
    rng = random.Random(size)
    written, parent = 0, None
    with open(path, "w", encoding="utf-8") as out:
        while written < size:
            line_id = str(uuid.UUID(int=rng.getrandbits(128)))
            tool = rng.random() < 0.3
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 4000 if tool else 80)))
            entry = {
                "parentUuid": parent, "cwd": project, "sessionId": session_id, "type": "user" if tool else "assistant",
                "message": {"content": [{"type": "tool_result" if tool else "text", "text": text}]},
                "uuid": line_id, "timestamp": f"2026-11-23T08:{rng.randint(0, 59):02d}:00.000Z",
            }  # fmt: skip
            line = json.dumps(entry, separators=(",", ":")) + "\n"
            out.write(line)
            written += len(line)
            parent = line_id
