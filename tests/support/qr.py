"""QR codes read as a phone would read them off a screen.

Terminal text (with the ANSI colours cclink draws it in, if any) becomes a
greyscale image as a light or a dark colour theme shows it, and zbar's
`zbarimg` decodes it. The image is a PGM written here, so no imaging library
is needed; the renderer knows only the characters and colours a QR code is
drawn with, and refuses anything else rather than guess.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

# What a terminal paints for each half-block character: (top half, bottom half), True for the foreground.
HALVES = {"\u2588": (True, True), "\u2580": (True, False), "\u2584": (False, True), " ": (False, False)}
SGR = re.compile(r"\x1b\[([0-9;]*)m")
# Pixels per terminal cell: a cell is about twice as tall as wide, so each half is square.
CELL_WIDTH = 6
MARGIN = 6  # cells of the theme's background around the text, as the rest of the window


@dataclass(frozen=True)
class Theme:
    """A colour theme, as grey levels (0 black, 255 white) of its default colours."""

    name: str
    foreground: int
    background: int


# Not pure black and white: real themes are softer, and a reader copes with that.
LIGHT = Theme("light", foreground=40, background=240)
DARK = Theme("dark", foreground=220, background=30)
THEMES = (LIGHT, DARK)


def zbarimg() -> str:
    """The path of zbarimg, or skip the test (Debian's zbar-tools; scripts/test installs it as root)."""
    path = shutil.which("zbarimg")
    if path is None:
        pytest.skip("zbarimg is not installed (Debian: apt-get install zbar-tools)")
    return path


def qr_lines(output: str) -> list[str]:
    """The lines of output that draw a QR code: half blocks and spaces only once colours are removed.

    Fails unless there is exactly one such block of lines.
    """
    lines = output.replace("\r\n", "\n").split("\n")
    drawn = [bool(plain.strip(" ")) and set(plain) <= set(HALVES) for plain in (SGR.sub("", line) for line in lines)]
    starts = [n for n, is_drawn in enumerate(drawn) if is_drawn and (n == 0 or not drawn[n - 1])]
    assert len(starts) == 1, f"expected one QR code in the output:\n{output}"
    end = starts[0]
    while end < len(lines) and drawn[end]:
        end += 1
    return lines[starts[0] : end]


def decode(lines: list[str], theme: Theme, *, inverted: bool = False) -> list[str]:
    """What zbarimg reads in lines as theme shows them; inverted lets it try light-on-dark codes too."""
    program = zbarimg()
    with tempfile.TemporaryDirectory(prefix="cclink-qr-") as folder:
        image = Path(folder) / "screen.pgm"
        image.write_bytes(pgm(paint(lines, theme)))
        options = ["-Stest-inverted"] if inverted else []
        result = subprocess.run(
            [program, "--raw", "-q", *options, str(image)], capture_output=True, text=True, timeout=60
        )
    # 4: no symbol found; anything else but 0 is zbarimg failing, not the code.
    assert result.returncode in (0, 4), result.stderr
    return result.stdout.splitlines()


def paint(lines: list[str], theme: Theme) -> list[list[int]]:
    """Grey levels, one per half cell: two rows per line, one column per cell, in a margin of background."""
    cells = [_cells(line, theme) for line in lines]
    width = max(len(row) for row in cells) + 2 * MARGIN
    blank = [theme.background] * width
    rows = [blank] * (2 * MARGIN)
    for row in cells:
        pad = [theme.background] * (width - MARGIN - len(row))
        for half in (0, 1):
            rows.append([theme.background] * MARGIN + [cell[half] for cell in row] + pad)
    return rows + [blank] * (2 * MARGIN)


def _cells(line: str, theme: Theme) -> list[tuple[int, int]]:
    """(top, bottom) grey levels of each cell of line, following its colour changes."""
    foreground, background = theme.foreground, theme.background
    cells: list[tuple[int, int]] = []
    position = 0
    for match in [*SGR.finditer(line), None]:
        end = match.start() if match else len(line)
        for char in line[position:end]:
            top, bottom = HALVES[char]
            cells.append((foreground if top else background, foreground if bottom else background))
        if match is None:
            break
        foreground, background = _apply(match.group(1), foreground, background, theme)
        position = match.end()
    return cells


def _apply(parameters: str, foreground: int, background: int, theme: Theme) -> tuple[int, int]:
    """The colours after one SGR sequence; only those that mean the same on every theme are accepted."""
    numbers = [int(p) if p else 0 for p in parameters.split(";")]
    while numbers:
        first = numbers.pop(0)
        if first == 0:
            foreground, background = theme.foreground, theme.background
        elif first == 39:
            foreground = theme.foreground
        elif first == 49:
            background = theme.background
        elif first in (38, 48) and numbers[:1] == [5] and len(numbers) >= 2:
            grey = _palette_grey(numbers[1])
            del numbers[:2]
            foreground, background = (grey, background) if first == 38 else (foreground, grey)
        else:
            # The 16 basic colours are the theme's to choose: a test must not pretend to know them.
            raise ValueError(f"SGR {parameters!r}: not a colour that looks the same on every theme")
    return foreground, background


def _palette_grey(index: int) -> int:
    """The grey level of a colour of the 256-colour palette's fixed part (the cube and the greys)."""
    if 16 <= index <= 231:
        levels = (0, 95, 135, 175, 215, 255)
        red, green, blue = (levels[(index - 16) // 36], levels[(index - 16) // 6 % 6], levels[(index - 16) % 6])
        return round(0.2126 * red + 0.7152 * green + 0.0722 * blue)
    if 232 <= index <= 255:
        return 8 + 10 * (index - 232)
    raise ValueError(f"palette colour {index} is the theme's to choose")


def pgm(rows: list[list[int]]) -> bytes:
    """A binary PGM of rows, each half cell CELL_WIDTH pixels square."""
    scaled = []
    for row in rows:
        line = bytes(level for level in row for _ in range(CELL_WIDTH))
        scaled.extend([line] * CELL_WIDTH)
    header = f"P5\n{len(scaled[0])} {len(scaled)}\n255\n".encode()
    return header + b"".join(scaled)
