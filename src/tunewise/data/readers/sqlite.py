"""SQLite database reader (stdlib sqlite3, opened read-only): a table, or the rows of a SELECT.

`options: {table: qa}` reads a table; `options: {query: "SELECT q AS prompt, a AS response FROM qa
WHERE ok = 1"}` reads a query's rows (column names from the query). The database is opened with
`mode=ro`, so neither a query nor tunewise can change it. Without either, a database with exactly
one table is read whole.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Iterator

from tunewise.data.readers import BadRow, RawRow, register
from tunewise.errors import DataError


def _connect(path: Path) -> sqlite3.Connection:
    with open(path, "rb") as f:
        if f.read(16) != b"SQLite format 3\x00":
            raise DataError("this is not an SQLite database", where=str(path),
                            fix="for a .sql text dump use a .sql file name (or reader: sql); for other files set `reader:`")
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)


def _tables(con: sqlite3.Connection) -> list[str]:
    return [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view') "
                                      "AND name NOT LIKE 'sqlite_%' ORDER BY name")]


@register("sqlite", ".sqlite", ".sqlite3", ".db", ".db3", options={
    "table": "table (or view) to read whole",
    "query": "a SELECT whose rows to read, e.g. SELECT q AS prompt, a AS response FROM qa",
    "batch_rows": "rows fetched at once; default 5000",
})
def read_sqlite(path: Path, options: dict) -> Iterator[RawRow | BadRow]:
    query, table = options.get("query"), options.get("table")
    if query and table:
        raise DataError("set either `query` or `table`, not both", where="data.datasets[].options",
                        fix="use table: name to read a whole table, or query: SELECT ... for a selection")
    con = _connect(path)
    try:
        tables = _tables(con)
        if not query:
            if table is None:
                if len(tables) != 1:
                    raise DataError(f"the database has {len(tables)} tables ({', '.join(tables) or 'none'})", where=str(path),
                                    fix="pick one with options: {table: name}, or give options: {query: SELECT ...}")
                table = tables[0]
            if table not in tables:
                raise DataError(f"no table '{table}' in this database", where=str(path), fix=f"tables: {', '.join(tables) or 'none'}")
            query = 'SELECT * FROM "' + table.replace('"', '""') + '"'
        where_q = "data.datasets[].options.query" if options.get("query") else str(path)
        try:
            cur = con.execute(query)
        except sqlite3.Error as e:
            raise DataError(f"the query failed: {e}", where=where_q,
                            fix=f"check the SQL; tables in {path.name}: {', '.join(tables) or 'none'}") from None
        if cur.description is None:
            raise DataError("the query returns no rows (it is not a SELECT)", where=where_q, fix="use a SELECT statement")
        names = [d[0] for d in cur.description]
        label = f"{path}:{table}" if table else str(path)
        n = 0
        while True:
            batch = cur.fetchmany(int(options.get("batch_rows", 5000)))
            if not batch:
                break
            for values in batch:
                n += 1
                yield RawRow({k: (v.decode("utf-8", "replace") if isinstance(v, bytes) else v) for k, v in zip(names, values)},
                             f"{label} row {n}")
    finally:
        con.close()
