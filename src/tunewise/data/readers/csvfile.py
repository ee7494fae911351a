"""CSV and TSV reader: pandas in chunks (a 1 GB file streams in bounded memory), encoding detected.

Every cell is read as text, exactly as written ("007" stays "007"; an empty cell is ""). Rows are
numbered as a spreadsheet shows them: the header is row 1, so the first data row is row 2. Rows with
too many fields are reported with their row number (pandas' `on_bad_lines="warn"`), never silently lost.
"""

from __future__ import annotations

import csv
import re
import warnings
from pathlib import Path
from typing import Iterator

from tunewise.data.readers import BadRow, RawRow, register
from tunewise.data.readers._encoding import decode_error, detect_encoding
from tunewise.errors import DataError

_SKIPPED = re.compile(r"Skipping line (\d+): ([^\n]*)")
_OPTIONS = {
    "encoding": "text encoding; detected when not set (utf-8, utf-8 with BOM, gb18030/GBK, big5, ...)",
    "sep": "field separator; default ',' for .csv (sniffed among , ; | tab) and tab for .tsv",
    "header_row": "row number (1-based) that holds the column names; default 1",
    "chunk_rows": "rows read per chunk (memory vs speed); default 20000",
}


def _sniff_sep(path: Path, encoding: str) -> str:
    with open(path, encoding=encoding, errors="replace", newline="") as f:
        sample = f.read(1 << 15)
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


_EOF_IN_QUOTE = re.compile(r"EOF inside string starting at row (\d+)")


def _parse_error(path: Path, e: Exception, row: int) -> DataError:
    text = str(e).strip().removeprefix("Error tokenizing data. ")
    m = _EOF_IN_QUOTE.search(text)
    if m:  # pandas counts records from 0 at the top of the file; ours are spreadsheet rows (the header is row 1)
        start = int(m.group(1)) + 1
        return DataError(f"a quote opened in row {start} is never closed: the file ends inside it", where=f"{path}:row {start}",
                         fix="close the quote in that row (a quote inside a field is written twice: \"\"), or remove it")
    return DataError(f"cannot parse this CSV ({text})",
                     where=f"{path}: after row {row}",
                     fix="a quote that is opened but never closed is the usual cause; fix it, or set options: {sep: ...} "
                     "if the separator is not what was detected")


def _chunks(path: Path, options: dict, default_sep: str | None):
    import pandas as pd

    encoding = detect_encoding(path, options.get("encoding"))
    sep = options.get("sep") or default_sep or _sniff_sep(path, encoding)
    header_row = int(options.get("header_row", 1))
    if header_row < 1:
        raise DataError("header_row must be 1 or more", where="data.datasets[].options.header_row", fix="header_row: 1 is the first row")
    try:
        it = pd.read_csv(path, sep=sep, encoding=encoding, dtype=str, keep_default_na=False, na_filter=False,
                         header=0, skiprows=header_row - 1, chunksize=int(options.get("chunk_rows", 20_000)),
                         on_bad_lines="warn", engine="c", skip_blank_lines=False)
    except pd.errors.EmptyDataError:
        raise DataError("the file is empty (not even a header row)", where=str(path), fix="add a header row with column names and data rows") from None
    except pd.errors.ParserError as e:
        raise _parse_error(path, e, header_row) from None
    except UnicodeDecodeError as e:
        raise decode_error(path, encoding, e, f"{path}:row {header_row}") from None
    return it, encoding, header_row


def _read(path: Path, options: dict, default_sep: str | None) -> Iterator[RawRow | BadRow]:
    import pandas as pd

    it, encoding, row = _chunks(path, options, default_sep)  # `row` = number of the last row accounted for
    while True:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", pd.errors.ParserWarning)
            try:
                chunk = next(it)
            except StopIteration:
                break
            except UnicodeDecodeError as e:
                raise decode_error(path, encoding, e, f"{path}: after row {row}") from None
            except pd.errors.ParserError as e:
                raise _parse_error(path, e, row) from None
        bad: dict[int, str] = {}
        for w in caught:
            for m in _SKIPPED.finditer(str(w.message)):
                bad[int(m.group(1))] = m.group(2).strip()  # pandas counts rows from the top of the file
        names = [str(c).strip() for c in chunk.columns]
        # Column lists, then zip: iterating pandas' arrow-backed strings cell by cell is several times slower.
        for values in zip(*(chunk.iloc[:, j].tolist() for j in range(len(names)))):
            row += 1
            while row in bad:
                yield BadRow(f"{path}:row {row}", f"malformed CSV row: {bad.pop(row)}")
                row += 1
            if any(values):  # blank lines count as rows (numbers stay right) but are not records
                yield RawRow(dict(zip(names, values)), f"{path}:row {row}")
        for r in sorted(bad):  # bad rows after the chunk's last good row
            yield BadRow(f"{path}:row {r}", f"malformed CSV row: {bad[r]}")
            row = max(row, r)


@register("csv", ".csv", options=_OPTIONS)
def read_csv(path: Path, options: dict) -> Iterator[RawRow | BadRow]:
    return _read(path, options, None)


@register("tsv", ".tsv", ".tab", options=_OPTIONS)
def read_tsv(path: Path, options: dict) -> Iterator[RawRow | BadRow]:
    return _read(path, options, "\t")
