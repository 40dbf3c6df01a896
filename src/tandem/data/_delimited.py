"""Delimited text files read fast with pandas, with errors that name the file, the line and the column.

pandas' C parser is fast but silently pads a line that is missing fields, so field counts are checked here
first: with numpy over the raw bytes when no field can be quoted (one pass, no Python loop per line), or with
the `csv` module when the file uses quotes. Line numbers are 1-based, as a text editor counts them, and
blank lines are skipped (but still counted), as pandas does.
"""
from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tandem.errors import TandemError

_UNIT_SEP = "\x1f"  # stands in for a multi-character separator such as MovieLens' '::'


def describe_sep(sep: str) -> str:
    return {"\t": "'\\t'", " ": "' '"}.get(sep, repr(sep))


def read_bytes(path: Path) -> bytes:
    """The file's bytes (gunzipped for `.gz`), or a TandemError naming it."""
    if not path.exists():
        raise TandemError(f"{path}: file not found")
    if not path.is_file():
        found = "a directory" if path.is_dir() else "a device, pipe or socket"
        raise TandemError(f"{path}: expected a regular file, found {found}")
    try:
        data = path.read_bytes()
        if path.suffix == ".gz":
            data = gzip.decompress(data)
    except (OSError, EOFError) as error:
        raise TandemError(f"{path}: cannot read ({error})") from None
    if data[:2] == b"\x1f\x8b":
        raise TandemError(f"{path}: gzip-compressed data; name the file with a .gz suffix or decompress it")
    return data


def require_utf8(path: Path, data: bytes) -> None:
    """A TandemError naming the line when `data` is not UTF-8: decoding it leniently would turn different ids
    with invalid bytes into the same text (each bad byte becomes U+FFFD), silently merging them."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        raise TandemError(
            f"{path.name}, line {line}: not valid UTF-8 (byte 0x{data[error.start]:02x}); re-encode the file as "
            f"UTF-8 (e.g. iconv -f latin1 -t utf-8)"
        ) from None


def require_timestamps(values: np.ndarray, column: str, where: Callable[[int, str], str]) -> np.ndarray:
    """Timestamps as finite seconds >= 0; a TandemError names the first bad cell's line and column."""
    bad = ~np.isfinite(values) | (values < 0)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise TandemError(f"{where(row, column)}: expected a timestamp (finite seconds >= 0), found {values[row]}")
    return values


@dataclass
class TextTable:
    """The parsed rows (every cell a str) plus what is needed to point at a row's line in the file."""

    path: Path
    frame: pd.DataFrame
    _line_of: Callable[[int], int]

    def line_of(self, row: int) -> int:
        """The 1-based line number of data row `row` (0-based)."""
        return self._line_of(row)

    def where(self, row: int, column: str | None = None) -> str:
        text = f"{self.path.name}, line {self.line_of(row)}"
        return f"{text}, column {column!r}" if column is not None else text


def read_delimited(
    path: Path,
    sep: str,
    *,
    names: Sequence[str] | None = None,
    encoding: str = "utf-8-sig",
    quoted: bool = False,
    data: bytes | None = None,
    numeric: Sequence[str] = (),
) -> TextTable:
    """Read a delimited file into str columns.

    `names` given: the file has no header and every line must have exactly len(names) fields. Otherwise the
    first non-blank line is the header and sets the field count. `quoted`: fields may be enclosed in double
    quotes (CSV); otherwise quote characters are ordinary text. `numeric`: columns tried as float64 first (fast);
    when one does not parse, every column is read as str and the caller's checks report the bad cell.
    """
    if data is None:
        data = read_bytes(path)
    if encoding.lower().startswith("utf-8") or encoding.lower().startswith("utf8"):
        require_utf8(path, data)
    if len(sep) != 1:
        if quoted:
            raise TandemError(f"{path.name}: a multi-character separator {sep!r} cannot be used with quoted fields")
        data = data.replace(sep.encode("latin-1" if encoding == "latin-1" else "utf-8"), _UNIT_SEP.encode())
        parse_sep = _UNIT_SEP
    else:
        parse_sep = sep
    use_csv = quoted and b'"' in data
    quoting = csv.QUOTE_MINIMAL if use_csv else csv.QUOTE_NONE

    if use_csv:
        line_numbers = _check_with_csv(path, data, parse_sep, sep, names, encoding)
        line_of: Callable[[int], int] = line_numbers.__getitem__
        header_names = None if names is not None else _csv_header(data, parse_sep, encoding)
    else:
        lines = _Lines(data)
        header_line = None if names is not None else lines.first_nonblank()
        if header_line is None and names is None:
            raise TandemError(f"{path.name}: the file is empty; expected a header line")
        header_names = None if names is not None else lines.text(header_line, encoding).split(parse_sep)
        expected = len(names) if names is not None else len(header_names)
        bad = lines.first_bad(parse_sep.encode(), expected, skip_until=header_line)
        if bad is not None:
            found = lines.field_count(bad, parse_sep.encode())
            raise TandemError(
                f"{path.name}, line {bad + 1}: expected {expected} fields separated by {describe_sep(sep)}, "
                f"found {found}"
            )
        line_of = lines.data_line_mapper(skip_until=header_line)

    columns = list(names) if names is not None else list(header_names)
    frame = None
    if numeric and len(set(columns)) == len(columns):
        # fast path: let the C parser read the number columns; any bad cell sends us to the str path below,
        # which reports it precisely
        dtype = {column: (np.float64 if column.strip() in numeric else str) for column in columns}
        try:
            frame = _parse(path, data, parse_sep, names, quoting, encoding, dtype, header_names)
        except (ValueError, TypeError):
            frame = None
    if frame is None:
        frame = _parse(path, data, parse_sep, names, quoting, encoding, str, header_names)
    if header_names is not None and names is None:
        frame.columns = [str(column).strip() for column in frame.columns]
    return TextTable(path, frame, line_of)


def _parse(path: Path, data: bytes, sep: str, names, quoting: int, encoding: str, dtype, header_names) -> pd.DataFrame:
    try:
        return pd.read_csv(
            io.BytesIO(data),
            sep=sep,
            header=None if names is not None else 0,
            names=list(names) if names is not None else None,
            dtype=dtype,
            keep_default_na=False,
            na_filter=False,
            index_col=False,
            quoting=quoting,
            encoding=encoding,
            encoding_errors="replace",
            skip_blank_lines=True,
            engine="c",
        )
    except pd.errors.EmptyDataError:
        return pd.DataFrame({name: pd.Series([], dtype=str) for name in (names or header_names or [])})
    except pd.errors.ParserError as error:  # field counts were checked before; keep any other failure clear
        raise TandemError(f"{path.name}: cannot parse ({error})") from None


class _Lines:
    """Line boundaries of a byte buffer, found with numpy."""

    def __init__(self, data: bytes) -> None:
        self.buffer = np.frombuffer(data, dtype=np.uint8)
        newlines = np.flatnonzero(self.buffer == 10)
        self.starts = np.concatenate([[0], newlines + 1])
        self.ends = np.concatenate([newlines, [len(self.buffer)]])
        if len(self.starts) and self.starts[-1] == len(self.buffer):  # the file ends with a newline
            self.starts, self.ends = self.starts[:-1], self.ends[:-1]
        # a trailing '\r' (Windows line ends) is not part of the line
        has_cr = (self.ends > self.starts) & (self.buffer[np.maximum(self.ends - 1, 0)] == 13)
        self.ends = self.ends - has_cr
        self.blank = self.ends == self.starts

    def first_nonblank(self) -> int | None:
        nonblank = np.flatnonzero(~self.blank)
        return int(nonblank[0]) if len(nonblank) else None

    def text(self, line: int, encoding: str) -> str:
        return bytes(self.buffer[self.starts[line]:self.ends[line]]).decode(encoding, errors="replace")

    def field_counts(self, sep: bytes) -> np.ndarray:
        if len(sep) != 1:
            raise ValueError("one-byte separators only")
        positions = np.flatnonzero(self.buffer == sep[0])
        line_index = np.searchsorted(self.starts, positions, side="right") - 1
        return np.bincount(line_index, minlength=len(self.starts)) + 1

    def field_count(self, line: int, sep: bytes) -> int:
        return bytes(self.buffer[self.starts[line]:self.ends[line]]).count(sep) + 1

    def first_bad(self, sep: bytes, expected: int, skip_until: int | None) -> int | None:
        """The 0-based index of the first non-blank line (after the header) whose field count is wrong."""
        bad = (self.field_counts(sep) != expected) & ~self.blank
        if skip_until is not None:
            bad[: skip_until + 1] = False
        index = np.flatnonzero(bad)
        return int(index[0]) if len(index) else None

    def data_line_mapper(self, skip_until: int | None) -> Callable[[int], int]:
        blank = self.blank.copy()

        def line_of(row: int) -> int:
            nonblank = np.flatnonzero(~blank)
            if skip_until is not None:
                nonblank = nonblank[nonblank > skip_until]
            return int(nonblank[row]) + 1

        return line_of


def _csv_header(data: bytes, sep: str, encoding: str) -> list[str]:
    reader = csv.reader(io.TextIOWrapper(io.BytesIO(data), encoding=encoding, errors="replace", newline=""),
                        delimiter=sep)
    for record in reader:
        if record:
            return record
    return []


def _check_with_csv(
    path: Path, data: bytes, parse_sep: str, sep: str, names: Sequence[str] | None, encoding: str
) -> list[int]:
    """Check field counts with the csv module (quoted fields); return each data row's first line number."""
    stream = io.TextIOWrapper(io.BytesIO(data), encoding=encoding, errors="replace", newline="")
    reader = csv.reader(stream, delimiter=parse_sep)
    expected = len(names) if names is not None else None
    line_numbers: list[int] = []
    previous_end = 0
    try:
        for record in reader:
            start = previous_end + 1
            previous_end = reader.line_num
            if not record:
                continue
            if expected is None:
                expected = len(record)
                continue
            if len(record) != expected:
                raise TandemError(
                    f"{path.name}, line {start}: expected {expected} fields separated by {describe_sep(sep)}, "
                    f"found {len(record)}"
                )
            line_numbers.append(start)
    except csv.Error as error:
        raise TandemError(f"{path.name}, line {reader.line_num}: {error}") from None
    if expected is None:
        raise TandemError(f"{path.name}: the file is empty; expected a header line")
    return line_numbers


# ------------------------------------------------------------------------------------------------ cell checks


def require_columns(available: Sequence[str], required: Sequence[str], where: str, hint: str = "") -> None:
    for column in required:
        if column not in available:
            found = ", ".join(repr(str(name)) for name in available)
            raise TandemError(f"{where}: missing column {column!r} (found: {found}){hint}")


def to_float(
    values: pd.Series,
    column: str,
    where: Callable[[int, str], str],
    *,
    allow_empty: bool = False,
) -> np.ndarray:
    """Parse a column as float64; a non-numeric cell is a TandemError naming its line and column.

    `allow_empty`: an empty cell (or a literal NaN) is a missing value, NaN; otherwise it is an error too.
    """
    if values.dtype.kind in "biuf":
        numbers = values.to_numpy(dtype=np.float64)
        missing = np.isnan(numbers)
        if missing.any() and not allow_empty:
            row = int(np.flatnonzero(missing)[0])
            raise TandemError(f"{where(row, column)}: expected a number, found a missing value (NaN)")
    else:
        numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
        missing = np.isnan(numbers)
        if not missing.any():
            return numbers
    if not missing.any():
        return numbers
    text = values.astype(object).where(values.notna(), "").astype(str).str.strip()
    empty = text.isin(["", "nan", "NaN", "NA", "null"]).to_numpy() if allow_empty else (text == "").to_numpy()
    bad = missing & ~empty if allow_empty else missing
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        found = "an empty value" if empty[row] else repr(text.iloc[row])
        raise TandemError(f"{where(row, column)}: expected a number, found {found}")
    return numbers


def require_tokens(values: pd.Series, column: str, where: Callable[[int, str], str]) -> pd.Series:
    """Ids as str with surrounding spaces removed (ints stay ints); an empty id is a TandemError naming its line
    and column. The result has a fresh 0..n-1 index."""
    values = values.reset_index(drop=True)
    if values.dtype.kind in "iu":
        return values
    if values.dtype.kind == "f":
        numbers = values.to_numpy(dtype=np.float64)
        missing = np.isnan(numbers)
        if missing.any():
            raise TandemError(f"{where(int(np.flatnonzero(missing)[0]), column)}: expected an id, found an empty value")
        if np.all(numbers == np.round(numbers)):
            return pd.Series(numbers.astype(np.int64))
        return values.astype(str)
    tokens = values.fillna("").astype(str).str.strip()
    empty = (tokens == "").to_numpy(dtype=bool)
    if empty.any():
        raise TandemError(f"{where(int(np.flatnonzero(empty)[0]), column)}: expected an id, found an empty value")
    return tokens
