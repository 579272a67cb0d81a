"""Reading a CSV file row by row, whatever spreadsheet wrote it: UTF-8 (with or without BOM) or Shift_JIS
(cp932, what Japanese Excel saves), with physical line numbers for the report and bytes read for progress."""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SNIFF_BYTES = 64 * 1024
# One CSV field is bounded so a broken quote cannot make one "row" of the whole file.
FIELD_LIMIT = 1_000_000


class CsvError(ValueError):
    """The file cannot be read as CSV (encoding, missing header)."""


class _CountingFile(io.FileIO):
    """A raw file that counts the bytes read through it (the text layer reads ahead in blocks)."""

    bytes_read = 0

    def readinto(self, buffer) -> int | None:  # type: ignore[no-untyped-def, override]
        count = super().readinto(buffer)
        self.bytes_read += count or 0
        return count


def detect_encoding(path: Path) -> str:
    with path.open("rb") as file:
        head = file.read(SNIFF_BYTES)
    if head.startswith(b"\xef\xbb\xbf"):
        return "utf-8-sig"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # not just a character cut at the sniff boundary
            return "cp932"
    return "utf-8-sig"


def file_digest(path: Path, *parts: str) -> str:
    """Content hash of the file and the options: the same file imported the same way is the same import."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    for part in parts:
        digest.update(b"\0" + part.encode())
    return digest.hexdigest()


@dataclass
class CsvRows:
    """Iterate (line, cells) after the header; `headers` and `bytes_read` are readable at any time."""

    path: Path
    encoding: str | None = None

    def __post_init__(self) -> None:
        csv.field_size_limit(FIELD_LIMIT)
        self.encoding = self.encoding or detect_encoding(self.path)
        self._raw = _CountingFile(self.path, "rb")
        self._text = io.TextIOWrapper(self._raw, encoding=self.encoding, newline="")
        self._reader = csv.reader(self._text)
        try:
            self.headers = [header.strip() for header in next(self._reader)]
        except StopIteration:
            self.close()
            raise CsvError("the file is empty: the first line must name the columns") from None
        except (UnicodeDecodeError, csv.Error) as exc:
            self.close()
            raise CsvError(f"cannot read the header line as {self.encoding} CSV: {exc}") from None

    @property
    def bytes_read(self) -> int:
        return self._raw.bytes_read

    def __iter__(self) -> Iterator[tuple[int, list[str]]]:
        line = self._reader.line_num
        try:
            for cells in self._reader:
                start, line = line + 1, self._reader.line_num
                if any(cell.strip() for cell in cells):
                    yield start, cells
        except (UnicodeDecodeError, csv.Error) as exc:
            raise CsvError(f"line {line + 1}: {exc}") from None

    def close(self) -> None:
        self._text.close()
