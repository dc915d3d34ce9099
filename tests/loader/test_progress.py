"""The loader's progress (`lez.progress.StageProgress`): plain `STAGE: done in X s` lines off a
terminal, a bar on one; the CSV read reports the bytes parsed while it parses, and reading in
segments gives the table, lines and skipped lines of one whole read."""

from __future__ import annotations

import gzip
import io
import random
import re
import string
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from lez.progress import StageProgress
from loader.build import build_store
from loader.config import LoaderConfig
from loader.extract import READ_STAGES, read_table
from tests.support.extracts import RULES_DIR, row, write_extract


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _extract(path: Path, plates: int, raw_lines: dict[int, str] | None = None) -> Path:
    rows = [row(f"1-ABC-{i:03d}", seats=str(i % 9)) for i in range(plates)]
    return write_extract(path, rows, raw_lines=raw_lines)


def test_a_build_off_a_terminal_prints_one_line_per_stage(tmp_path: Path, key_file: Path) -> None:
    extract = _extract(tmp_path / "x.csv", 50)
    config = LoaderConfig(
        store_root=tmp_path / "store",
        key_file=key_file,
        rules_dir=RULES_DIR,
        reports_dir=tmp_path / "store" / "reports",
        workers=1,
    )
    screen = io.StringIO()
    build_store(config, extract, progress=StageProgress(screen, byte_stages=READ_STAGES))
    lines = screen.getvalue().splitlines()
    assert all(re.fullmatch(r"[a-z_]+: done in \d+\.\d s", line) for line in lines), lines
    assert [line.split(":")[0] for line in lines] == [
        "read_csv",
        "validate_and_key",
        "write",
        "sync",
        "verify",
    ]


def test_a_terminal_gets_a_bar_with_its_rate() -> None:
    screen = _Terminal()
    progress = StageProgress(screen, byte_stages=["read_csv"])
    for done in (0, 1 << 20, 3 << 20, 4 << 20):
        progress("read_csv", done, 4 << 20)
    progress("write", 0, 1)
    progress("write", 1, 1)
    shown = screen.getvalue()
    assert "read_csv: 100%" in shown and "4.00M/4.00M" in shown and "B/s" in shown
    assert "write: 100%" in shown
    assert "done in" not in shown


def test_the_parse_reports_the_bytes_parsed_while_it_parses(tmp_path: Path) -> None:
    extract = _extract(tmp_path / "x.csv", 300)  # ~30 kB: about 30 blocks of 1 kB
    size = extract.stat().st_size
    calls: list[tuple[str, int, int]] = []
    read_table(extract, lambda *call: calls.append(call), block_size=1 << 10, segment_blocks=2)
    assert {stage for stage, _, _ in calls} == {"read_csv"}
    assert {total for _, _, total in calls} == {size}
    done = [d for _, d, _ in calls]
    assert done[0] == 0 and done[-1] == size and done == sorted(done)
    assert len([d for d in done if 0 < d < size]) >= 5  # the bar moves during the parse


def test_a_compressed_extract_reports_the_bytes_of_the_file_read(tmp_path: Path) -> None:
    """Bytes of the gzip file, not of its text: Arrow decompresses 64 kB of it at a time, so
    the file is large enough for a few of those."""
    rng = random.Random(7)
    rows = [
        row(
            f"1-{''.join(rng.choices(string.ascii_uppercase, k=3))}-{rng.randrange(1000):03d}",
            max_mass=str(rng.randrange(500, 40_000)),
            running_mass=str(rng.randrange(400, 30_000)),
            co2=str(rng.randrange(300)),
            power_kw=str(rng.randrange(30, 400)),
        )
        for _ in range(30_000)
    ]
    plain = write_extract(tmp_path / "x.csv", rows)
    zipped = tmp_path / "x.csv.gz"
    zipped.write_bytes(gzip.compress(plain.read_bytes(), compresslevel=1))
    size = zipped.stat().st_size
    assert size > 4 << 16
    calls: list[tuple[str, int, int]] = []
    read_table(zipped, lambda *call: calls.append(call), block_size=1 << 16, segment_blocks=1)
    assert calls[-1] == ("read_csv", size, size)
    assert len([done for _, done, _ in calls if 0 < done < size]) >= 3


def _same_read(a: tuple[pa.Table, np.ndarray, np.ndarray], b: tuple[pa.Table, ...]) -> None:
    def plain(table: pa.Table) -> pa.Table:
        columns = [
            c.cast(c.type.value_type) if pa.types.is_dictionary(c.type) else c
            for c in table.columns
        ]
        return pa.table(columns, names=table.column_names).combine_chunks()

    assert plain(a[0]).equals(plain(b[0]))
    assert np.array_equal(a[1], b[1]) and np.array_equal(a[2], b[2])


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
@pytest.mark.parametrize("compressed", [False, True])
def test_segments_read_like_one_whole_read(tmp_path: Path, newline: str, compressed: bool) -> None:
    """Many small segments against one (the default block holds the whole file): the same
    values, and the same physical lines for rows and for skipped rows (a short row, a long
    row, an empty line), malformed values (the re-read as text) included."""
    text = _extract(
        tmp_path / "x.csv",
        400,
        raw_lines={5: "1-XYZ-001,N,M1", 150: "", 233: ",".join(["x"] * 25)},
    ).read_text()
    text = text.replace("1-ABC-007,N,M1,AA,01,1800", "1-ABC-007,N,M1,AA,01,heavy")
    path = tmp_path / ("y.csv.gz" if compressed else "y.csv")
    data = text.replace("\n", newline).encode()
    path.write_bytes(gzip.compress(data) if compressed else data)
    stages: list[str] = []
    segmented = read_table(
        path, lambda stage, *_: stages.append(stage), block_size=1 << 10, segment_blocks=1
    )
    whole = read_table(path)
    _same_read(segmented, whole)
    assert len(whole[2]) == 2 and whole[0].num_rows == 400 + 1  # the empty line is a row
    assert stages[0] == "read_csv" and {"reread_as_text", "reread_for_lines"} <= set(stages)


def test_a_line_longer_than_a_segment_is_refused_like_before(tmp_path: Path) -> None:
    """A line longer than a block fails the parse, segment or not (it is read whole)."""
    path = _extract(tmp_path / "x.csv", 20, raw_lines={10: "1-ABC-999," + "y" * 5000})
    from lez.errors import ExtractError

    with pytest.raises(ExtractError, match="not a readable CSV extract"):
        read_table(path, block_size=1 << 10, segment_blocks=1)
