"""Parquet reader (pyarrow): record batches streamed, so the file never has to fit in memory at once.

Nested columns (a list of {role, content} structs, say) arrive as Python lists and dicts, so a
parquet export of a chat dataset works with `format: messages` or `sharegpt` unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from tunewise.data.readers import BadRow, RawRow, register
from tunewise.errors import DataError


@register("parquet", ".parquet", ".pq", options={
    "columns": "list of columns to read (default: all)",
    "batch_rows": "rows per batch read (memory vs speed); default 10000",
})
def read_parquet(path: Path, options: dict) -> Iterator[RawRow | BadRow]:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    columns = options.get("columns")
    if columns is not None:
        missing = [c for c in columns if c not in pf.schema_arrow.names]
        if missing:
            raise DataError(f"no column(s) {', '.join(missing)} in this file", where=str(path),
                            fix=f"columns are: {', '.join(pf.schema_arrow.names)}")
    n = 0
    for batch in pf.iter_batches(batch_size=int(options.get("batch_rows", 10_000)), columns=columns):
        for row in batch.to_pylist():
            n += 1
            yield RawRow(row, f"{path}:row {n}")
