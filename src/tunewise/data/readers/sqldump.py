"""SQL dump reader: CREATE TABLE + INSERT ... VALUES (and PostgreSQL COPY ... FROM stdin) into rows.

sqlparse does the lexing and statement splitting; this module turns its tokens into rows with column
names. sqlparse's stock string rule mis-reads a string that ends in an escaped backslash ('C:\\'), so
we lex with our own `Lexer` instance (the library's documented extension point, never its global one)
whose string rules follow the dump's dialect: MySQL escapes with backslashes, PostgreSQL and SQLite
(standard_conforming_strings) only double the quote, and E'...' strings always take backslashes.

The file is lexed in slices that end at a statement boundary, so a large dump is not lexed in one go;
COPY data lines never reach the lexer. Each row's location is the line its '(' (or COPY line) is on.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

from tunewise.data.readers import BadRow, RawRow, register
from tunewise.data.readers._encoding import decode_error, detect_encoding
from tunewise.errors import DataError

_SLICE = 1 << 18  # characters lexed at once (sqlparse tokens are heavy objects; keep slices small)
_COPY_LINE = re.compile(r"^\s*COPY\s.*\bFROM\s+stdin\b.*;\s*$", re.I)
_DATA_LINE = re.compile(r"^\s*(?:(?:INSERT|REPLACE)(?:\s+(?:IGNORE|LOW_PRIORITY|DELAYED|HIGH_PRIORITY))*\s+INTO|COPY)\s+"
                        r"((?:`[^`]+`|\"[^\"]+\"|\[[^\]]+\]|[\w$]+)(?:\s*\.\s*(?:`[^`]+`|\"[^\"]+\"|\[[^\]]+\]|[\w$]+))*)", re.I)
_BACKSLASH_STR = r"'(?:[^'\\]|\\[\s\S]|'')*'"
_STANDARD_STR = r"'(?:[^']|'')*'"
_NOT_COLUMNS = {"PRIMARY KEY", "PRIMARY", "KEY", "UNIQUE", "CONSTRAINT", "INDEX", "FOREIGN", "CHECK", "FULLTEXT",
                "SPATIAL", "EXCLUDE", "LIKE", "PERIOD"}
_MYSQL_ESC = {"0": "\0", "b": "\b", "n": "\n", "r": "\r", "t": "\t", "Z": "\x1a", "%": "\\%", "_": "\\_"}
_C_ESC = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


def _lexer(backslash: bool):
    from sqlparse import keywords, tokens
    from sqlparse.lexer import Lexer

    string = _BACKSLASH_STR if backslash else _STANDARD_STR
    # The tokens that make up VALUES lists go first: sqlparse tries its rules in order for every token, and
    # a dump is mostly strings, numbers and ( , ). Each moved rule is one no earlier rule could match.
    number_rules = [(rx, tt) for rx, tt in keywords.SQL_REGEX if tt is not keywords.PROCESS_AS_KEYWORD and tt in tokens.Number]
    rules = [(r"(\r\n|\r|\n)", tokens.Newline), (r"[ \t]+", tokens.Whitespace), (r"[(),;]", tokens.Punctuation),
             (string, tokens.String.Single), *number_rules, (r"NULL\b", tokens.Keyword),
             (r"[eE]" + _BACKSLASH_STR, tokens.String.Single)]  # PostgreSQL E'...' strings
    for rx, tt in keywords.SQL_REGEX:
        if tt is tokens.String.Single or (rx, tt) in number_rules:
            continue
        if tt is tokens.String.Symbol:
            if rx.startswith("("):  # the library's second, looser double-quote rule is not needed
                continue
            rx = r'"(?:[^"\\]|\\[\s\S]|"")*"' if backslash else r'"(?:[^"]|"")*"'
        rules.append((rx, tt))
    lex = Lexer()
    lex.default_initialization()
    lex.set_SQL_REGEX(rules)
    return lex


_KINDS: dict = {}


def _kind(tt) -> str:
    """A short name for a sqlparse token type, cached: token-type `in` checks are slow, and a dump has millions."""
    k = _KINDS.get(tt)
    if k is None:
        from sqlparse import tokens as T

        order = [("command", T.Command), ("comment", T.Comment), ("ws", T.Text.Whitespace), ("ws", T.Newline),
                 ("str", T.String.Single), ("sym", T.String.Symbol), ("int", T.Number.Integer),
                 ("float", T.Number.Float), ("num", T.Number), ("punct", T.Punctuation), ("error", T.Error),
                 ("word", T.Name), ("word", T.Keyword)]
        k = _KINDS[tt] = next((name for name, parent in order if tt in parent), "other")
    return k


def _dialect(head: str, option: str | None) -> str:
    if option:
        if option not in ("mysql", "postgres", "sqlite"):
            raise DataError(f"unknown SQL dialect '{option}'", where="data.datasets[].options.dialect",
                            fix="use dialect: mysql (backslash escapes), postgres or sqlite (quotes doubled only)")
        return option
    low = head.lower()
    if "postgresql database dump" in low or re.search(r"standard_conforming_strings\s*=\s*on", low):
        return "postgres"
    if ("pragma " in low or "begin transaction;" in low) and "`" not in low:
        return "sqlite"
    return "mysql"  # also the safe guess for dumps that write \' and \n inside strings


# ---------------------------------------------------------------------------- statements
def _complete(stmt) -> bool:
    from sqlparse import tokens as T

    toks = list(stmt.flatten())
    if any(t.ttype is T.Error and t.value in "'\"`" for t in toks):
        return False
    last = next((t for t in reversed(toks) if not t.is_whitespace and t.ttype not in T.Comment), None)
    return last is not None and last.match(T.Punctuation, ";")


def _events(f, lexer) -> Iterator[tuple]:
    """Yield ('stmt', line, Statement), ('copyrow', line, text) and ('copyend', line, None) in file order."""
    from sqlparse.engine.statement_splitter import StatementSplitter

    def statements(text: str, start: int):
        for stmt in StatementSplitter().process(lexer.get_tokens(text)):
            yield "stmt", start, stmt
            start += str(stmt).count("\n")

    buf: list[str] = []
    start, size, flush_at, copying = 1, 0, _SLICE, False
    for lineno, line in enumerate(f, start=1):
        if copying:
            body = line.rstrip("\n")
            if body == "\\.":
                copying = False
                yield "copyend", lineno, None
            else:
                yield "copyrow", lineno, body
            continue
        if not buf:
            start = lineno
        buf.append(line)
        size += len(line)
        if not line.rstrip().endswith(";"):
            continue
        is_copy = bool(_COPY_LINE.match(line))
        if size < flush_at and not is_copy:
            continue
        stmts = list(statements("".join(buf), start))
        if stmts and not _complete(stmts[-1][2]):
            flush_at = size * 2  # a ';' inside a string: read on (doubling keeps a broken file linear)
            continue
        yield from stmts
        buf, size, flush_at = [], 0, _SLICE
        if is_copy and stmts:
            first = _significant(stmts[-1][2], 0)
            copying = bool(first) and first[0][1].upper() == "COPY"
    if buf:
        yield from statements("".join(buf), start)


def _significant(stmt, line: int) -> list[tuple]:
    """(kind, value, line) of every token but whitespace, comments and psql meta-commands (\\connect ...)."""
    out, skip_line = [], None
    for tok in stmt.flatten():
        kind, value = _kind(tok.ttype), tok.value
        if kind == "command":
            skip_line = line
        elif kind not in ("ws", "comment") and line != skip_line:
            out.append((kind, value, line))
        if "\n" in value:
            line += value.count("\n")
    return out


# ---------------------------------------------------------------------------- values
def _unquote(name: str) -> str:
    if len(name) >= 2 and (name[0], name[-1]) in (("`", "`"), ('"', '"'), ("[", "]")):
        q = name[0]
        return name[1:-1].replace(q * 2, q) if q != "[" else name[1:-1]
    return name


_MYSQL_RX = {q: re.compile(r"\\([\s\S])|" + q * 2) for q in "'\""}
_C_RX = re.compile(r"\\([0-7]{1,3}|x[0-9a-fA-F]{1,2}|[\s\S])")
_E_RX = re.compile(_C_RX.pattern + "|''")


def _unescape_mysql(body: str, quote: str) -> str:
    return _MYSQL_RX[quote].sub(lambda m: quote if m.group(1) is None else _MYSQL_ESC.get(m.group(1), m.group(1)), body)


def _unescape_c(body: str, rx=_C_RX) -> str:
    """PostgreSQL E'' strings and COPY text fields: C-style escapes, octal and hex."""
    def sub(m):
        c = m.group(1)
        if c is None:
            return "'"
        if c[0] in "01234567":
            return chr(int(c, 8))
        if len(c) > 1:
            return chr(int(c[1:], 16))
        return _C_ESC.get(c, c)

    return rx.sub(sub, body)


def _string(value: str, mode: str) -> str:
    """The text of a quoted literal. mode: 'backslash' (MySQL), 'standard' (quotes doubled), 'e' (PostgreSQL E'')."""
    quote, body = value[0], value[1:-1]
    if mode == "standard":
        return body.replace(quote * 2, quote)
    return _unescape_c(body, _E_RX) if mode == "e" else _unescape_mysql(body, quote)


def _value(toks: list[tuple], backslash: bool):
    if not toks:
        raise ValueError("an empty value")
    if any(v == "::" for _, v, _ in toks):  # PostgreSQL cast: 'x'::text
        toks = toks[:next(i for i, (_, v, _) in enumerate(toks) if v == "::")]
    mode = "backslash" if backslash else "standard"
    if len(toks) == 1:
        tt, v, _ = toks[0]
        if tt == "str":
            if v[0] in "eE":
                return _string(v[1:], "e")
            return _string(v, mode)
        if tt == "sym":  # MySQL "double-quoted string" (a value here, not a name)
            return _string(v, mode)
        if tt == "int":
            return int(v)
        if tt == "float":
            return float(v)
        up = v.upper()
        if up == "NULL":
            return None
        if up in ("TRUE", "FALSE"):
            return up == "TRUE"
        return v
    if len(toks) == 2 and toks[0][1] in ("-", "+") and toks[1][0] in ("int", "float"):
        return _value(toks[1:], backslash) * (-1 if toks[0][1] == "-" else 1)
    if len(toks) == 2 and toks[1][0] == "str" and toks[0][0] == "word":
        # _utf8mb4'..', N'..', _binary '..': a charset or national prefix on a string
        return _value(toks[1:], backslash)
    return "".join(v for _, v, _ in toks)  # a function call such as now(): kept as written


def _name(toks: list[tuple], i: int) -> tuple[tuple[str, ...], int]:
    parts = [_unquote(toks[i][1])]
    i += 1
    while i + 1 < len(toks) and toks[i][0] == "punct" and toks[i][1] == ".":
        parts.append(_unquote(toks[i + 1][1]))
        i += 2
    return tuple(parts), i


def _groups(toks: list[tuple], i: int) -> tuple[list[list[tuple]], int, bool]:
    """From the '(' at i, split its contents at top-level commas. Returns (groups, index after ')', closed)."""
    groups, cur, depth = [], [], 0
    while i < len(toks):
        tt, v, line = toks[i]
        i += 1
        if v == "(" and tt == "punct":
            depth += 1
            if depth == 1:
                continue
        elif v == ")" and tt == "punct":
            depth -= 1
            if depth == 0:
                groups.append(cur)
                return groups, i, True
        elif v == "," and depth == 1 and tt == "punct":
            groups.append(cur)
            cur = []
            continue
        cur.append((tt, v, line))
    return groups, i, False


def _create_columns(toks: list[tuple]) -> tuple[tuple[str, ...], list[str]] | None:
    """CREATE TABLE name (col type, ...): the table's name and its column names."""
    i = 1
    while i < len(toks) and toks[i][1].upper() != "TABLE":
        i += 1
    if i >= len(toks) - 1:
        return None
    i += 1
    while i < len(toks) and toks[i][1].upper().split() in (["IF", "NOT", "EXISTS"], ["IF"], ["NOT"], ["EXISTS"]):
        i += 1
    name, i = _name(toks, i)
    if i >= len(toks) or toks[i][1] != "(":
        return None
    groups, _, _ = _groups(toks, i)
    cols = [_unquote(g[0][1]) for g in groups if g and " ".join(g[0][1].upper().split()) not in _NOT_COLUMNS]
    return name, cols


# ---------------------------------------------------------------------------- the reader
def _matches(name: tuple[str, ...], want: str) -> bool:
    w = want.lower()
    return w in (name[-1].lower(), ".".join(name).lower())


def _tables_with_data(path: Path, encoding: str) -> list[str]:
    seen: dict[str, None] = {}
    with open(path, encoding=encoding, errors="replace") as f:
        for line in f:
            m = _DATA_LINE.match(line)
            if m:
                seen[".".join(_unquote(p.strip()) for p in re.split(r"\s*\.\s*", m.group(1)))] = None
    return list(seen)


@register("sql", ".sql", options={
    "table": "table whose rows to read (name or schema.name); needed when the dump holds data for several tables",
    "dialect": "mysql, postgres or sqlite; detected from the dump's header when not set",
    "encoding": "text encoding; detected when not set",
})
def read_sql_dump(path: Path, options: dict) -> Iterator[RawRow | BadRow]:
    encoding = detect_encoding(path, options.get("encoding"))
    want = options.get("table")
    want = str(want) if want is not None else None
    if want is None:
        tables = _tables_with_data(path, encoding)
        if len({t.split(".")[-1].lower() for t in tables}) > 1:
            raise DataError(f"this dump holds data for several tables ({', '.join(tables)})", where=str(path),
                            fix=f"pick one on the dataset: options: {{table: {tables[0].split('.')[-1]}}}")
    with open(path, encoding=encoding) as f:
        head = f.read(1 << 16)
    backslash = _dialect(head, options.get("dialect")) == "mysql"
    lexer = _lexer(backslash)
    try:
        with open(path, encoding=encoding) as f:
            yield from _rows(path, f, lexer, want, backslash)
    except UnicodeDecodeError as e:
        raise decode_error(path, encoding, e) from None


def _rows(path: Path, f, lexer, want: str | None, backslash: bool) -> Iterator[RawRow | BadRow]:
    columns: dict[tuple[str, ...], list[str]] = {}
    seen: dict[str, int] = {}
    chosen: tuple[str, ...] | None = None
    copy_to: tuple[tuple[str, ...], list[str], bool] | None = None  # (table, columns, rows wanted?)

    def pick(name: tuple[str, ...]) -> bool:
        nonlocal chosen
        if want is not None:
            return _matches(name, want)
        if chosen is None:
            chosen = name
        if name[-1].lower() != chosen[-1].lower():  # the up-front scan missed it (unusual layout): still never guess
            raise DataError(f"this dump holds data for several tables ({'.'.join(chosen)}, {'.'.join(name)})",
                            where=str(path), fix=f"pick one on the dataset: options: {{table: {chosen[-1]}}}")
        return True

    for kind, line, item in _events(f, lexer):
        if kind == "copyrow":
            if copy_to is not None:
                name, cols, keep = copy_to
                seen[".".join(name)] = seen.get(".".join(name), 0) + 1
                if not keep:
                    continue
                fields = item.split("\t")
                where = f"{path}:{line}"
                if len(fields) != len(cols):
                    yield BadRow(where, f"COPY row has {len(fields)} fields but {'.'.join(name)} has {len(cols)} columns", item[:200])
                    continue
                yield RawRow({c: None if v == "\\N" else _unescape_c(v) for c, v in zip(cols, fields)}, where)
            continue
        if kind == "copyend":
            copy_to = None
            continue
        toks = _significant(item, line)
        if not toks:
            continue
        head = toks[0][1].upper()
        if head.startswith("CREATE"):
            found = _create_columns(toks)
            if found:
                columns[found[0]] = found[1]
            continue
        if head == "COPY":
            name, i = _name(toks, 1)
            cols = [_unquote(g[0][1]) for g in _groups(toks, i)[0] if g] if i < len(toks) and toks[i][1] == "(" else columns.get(name)
            if any(v.upper() == "STDIN" for _, v, _ in toks):
                keep = pick(name)
                if keep and not cols:
                    raise DataError(f"COPY into {'.'.join(name)} names no columns and the dump has no CREATE TABLE for it",
                                    where=f"{path}:{toks[0][2]}", fix="dump with column names (pg_dump does this by default)")
                copy_to = (name, cols or [], keep)
            continue
        if head not in ("INSERT", "REPLACE"):
            continue
        where0 = f"{path}:{toks[0][2]}"
        if any(tt == "error" and v in "'\"`" for tt, v, _ in toks):
            yield BadRow(where0, "unterminated string: a quote opened in this INSERT is never closed", str(item)[:200])
            continue
        i = next((k for k, (_, v, _) in enumerate(toks) if v.upper() == "INTO"), None)
        if i is None or i + 1 >= len(toks):
            continue
        name, i = _name(toks, i + 1)
        seen.setdefault(".".join(name), 0)
        keep = pick(name)
        cols = columns.get(name) or next((c for n, c in columns.items() if n[-1].lower() == name[-1].lower()), None)
        if i < len(toks) and toks[i][1] == "(":
            groups, i, _ = _groups(toks, i)
            cols = [_unquote(g[0][1]) for g in groups if g]
        if i >= len(toks) or toks[i][1].upper() not in ("VALUES", "VALUE"):
            continue  # INSERT ... SELECT: no literal data
        i += 1
        k = 0
        while i < len(toks) and toks[i][1] == "(":
            k += 1
            row_line = toks[i][2]
            groups, i, closed = _groups(toks, i)
            where = f"{path}:{row_line}" + (f" (row {k})" if k > 1 or (i < len(toks) and toks[i][1] == ",") else "")
            seen[".".join(name)] += 1
            if not keep:  # another table's row: counted for the report, not converted
                if i < len(toks) and toks[i][1] == ",":
                    i += 1
                continue
            if not closed:
                yield BadRow(where, "a row of values is never closed with ')'", str(item)[:200])
                break
            try:
                values = [_value(g, backslash) for g in groups]
            except ValueError as e:
                yield BadRow(where, f"malformed row of values ({e})", " ".join(v for g in groups for _, v, _ in g)[:200])
            else:
                names = cols or [f"column_{n + 1}" for n in range(len(values))]
                if len(values) != len(names):
                    yield BadRow(where, f"row has {len(values)} values but {'.'.join(name)} has {len(names)} columns "
                                 f"({', '.join(names)})", repr(values)[:200])
                else:
                    yield RawRow(dict(zip(names, values)), where)
            if i < len(toks) and toks[i][1] == ",":
                i += 1
    if want is not None and not any(_matches(tuple(t.split(".")), want) and n for t, n in seen.items()):
        listing = ", ".join(f"{t} ({n} rows)" for t, n in seen.items()) or "none"
        raise DataError(f"no rows for table '{want}' in this dump", where=str(path), fix=f"tables with data: {listing}")
    if not seen:
        raise DataError("no data in this dump (no INSERT ... VALUES and no COPY ... FROM stdin)", where=str(path),
                        fix="dump the data too (mysqldump without --no-data; pg_dump without --schema-only)")
