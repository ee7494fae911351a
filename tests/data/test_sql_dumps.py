"""SQL dump reader: mysqldump and pg_dump output into rows with column names, errors with file:line."""

import pytest

import fixtures_writer as fx
from tunewise.data import readers
from tunewise.data.readers import BadRow, RawRow
from tunewise.errors import DataError


def _read(path, **options):
    return list(readers.read(path, None, options))


def _line_of(path, needle):
    return next(i for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1) if needle in line)


def test_mysqldump_rows_escapes_and_locations(tmp_path):
    p = fx.mysql_dump(tmp_path / "helpdesk.sql")
    with pytest.raises(DataError) as e:
        _read(p)
    assert "several tables (tickets, users)" in e.value.what and "table: tickets" in e.value.fix
    rows = _read(p, table="tickets")
    assert all(isinstance(r, RawRow) for r in rows) and [r.data["id"] for r in rows] == [1, 2, 3, 4, 5]
    by_id = {r.data["id"]: r.data for r in rows}
    assert by_id[1] == {"id": 1, "question": "Where's my invoice?", "rating": 4.5, "created": "2024-01-02 10:00:00",
                        "answer": 'Under Billing; it\'s the "Invoices" tab.\nDownload it as PDF.'}
    assert by_id[2]["answer"] == "Use C:\\Users\\you\\Downloads\\" and by_id[2]["rating"] is None
    assert by_id[3]["question"] == "It's slow" and by_id[3]["rating"] == -1.0
    assert by_id[4] == {**by_id[4], "question": "怎么退款？", "answer": "在订单页面点击“申请退款”。"}
    assert by_id[5]["question"] == "Two\nlines?" and by_id[5]["created"] == "NOW()"
    insert = _line_of(p, "INSERT INTO `tickets` VALUES")
    assert rows[0].where == f"{p}:{insert} (row 1)" and rows[3].where == f"{p}:{insert} (row 4)"
    assert rows[4].where == f"{p}:{insert + 1}"
    users = _read(p, table="users")
    assert [r.data for r in users] == [{"id": 1, "email": "a@example.com"}, {"id": 2, "email": "b@example.com"}]


def test_pg_dump_copy_and_inserts(tmp_path):
    p = fx.pg_dump(tmp_path / "pg.sql")
    rows = _read(p)  # one table with data: no `table` needed
    data = [r.data for r in rows]
    assert data[0] == {"id": "1", "prompt": "What is a tab?", "response": "A character:\there it is."}
    assert data[1]["response"] == "C:\\Temp on Windows" and data[2]["response"] is None
    assert data[3]["response"] == "第一行\n第二行"
    assert data[4] == {"id": 5, "prompt": "It's standard SQL", "response": "A path: C:\\temp\\"}  # standard strings: \ is literal
    assert data[5] == {"id": 6, "prompt": "Escaped\ttab", "response": "x"}  # E'' escapes, ::text cast
    assert rows[0].where == f"{p}:{_line_of(p, 'What is a tab?')}"
    assert [r.data for r in _read(p, table="public.qa")] == data
    with pytest.raises(DataError) as e:
        _read(p, table="qaa")
    assert "no rows for table 'qaa'" in e.value.what and "public.qa (6 rows)" in e.value.fix


def test_sqlite_dump_and_insert_without_create(tmp_path):
    p = tmp_path / "lite.sql"
    p.write_text("PRAGMA foreign_keys=OFF;\nBEGIN TRANSACTION;\nCREATE TABLE qa(q TEXT, a TEXT);\n"
                 "INSERT INTO qa VALUES('C:\\dir\\','it''s');\nCOMMIT;\n", encoding="utf-8")
    assert [r.data for r in _read(p)] == [{"q": "C:\\dir\\", "a": "it's"}]
    bare = tmp_path / "bare.sql"
    bare.write_text("INSERT INTO t VALUES (1, 'x'), (2, 'y');\n", encoding="utf-8")
    assert [r.data for r in _read(bare)] == [{"column_1": 1, "column_2": "x"}, {"column_1": 2, "column_2": "y"}]


def test_malformed_rows_name_their_line(tmp_path):
    p = tmp_path / "bad.sql"
    p.write_text("CREATE TABLE `qa` (`q` text, `a` text);\n"
                 "INSERT INTO `qa` VALUES ('ok','fine'),\n('only one value');\n"
                 "INSERT INTO `qa` VALUES ('good','row');\n"
                 "INSERT INTO `qa` VALUES ('never closed, 'x');\n", encoding="utf-8")
    rows = _read(p)
    assert [type(r).__name__ for r in rows] == ["RawRow", "BadRow", "RawRow", "BadRow"]
    assert rows[1].where == f"{p}:3 (row 2)" and "1 values but qa has 2 columns (q, a)" in rows[1].reason
    assert rows[3].where == f"{p}:5" and "unterminated string" in rows[3].reason


def test_copy_row_with_wrong_field_count(tmp_path):
    p = tmp_path / "c.sql"
    p.write_text("COPY public.t (a, b) FROM stdin;\nx\ty\nonly-one\n\\.\n", encoding="utf-8")
    rows = _read(p)
    assert rows[0].data == {"a": "x", "b": "y"}
    assert isinstance(rows[1], BadRow) and rows[1].where == f"{p}:3" and "1 fields" in rows[1].reason


def test_gbk_dump_and_empty_dump(tmp_path):
    p = tmp_path / "zh.sql"
    p.write_bytes("CREATE TABLE faq (q text, a text);\nINSERT INTO faq VALUES ('你好吗？','我很好，谢谢。');\n".encode("gbk"))
    assert _read(p)[0].data == {"q": "你好吗？", "a": "我很好，谢谢。"}
    empty = tmp_path / "schema.sql"
    empty.write_text("CREATE TABLE faq (q text, a text);\n", encoding="utf-8")
    with pytest.raises(DataError, match="no data in this dump"):
        _read(empty)


def test_large_statement_slices_keep_lines(tmp_path, monkeypatch):
    """Slicing the file for the lexer must not cut a string that holds ';' at a line end."""
    from tunewise.data.readers import sqldump

    monkeypatch.setattr(sqldump, "_SLICE", 64)  # force many slices on a small file
    p = tmp_path / "s.sql"
    lines = ["CREATE TABLE t (q text, a text);"]
    lines += [f"INSERT INTO t VALUES ('q{i}', 'answer {i};\nstill answer {i};');" for i in range(30)]
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    rows = _read(p)
    assert [r.data["a"] for r in rows] == [f"answer {i};\nstill answer {i};" for i in range(30)]
    assert rows[7].where == f"{p}:{2 + 7 * 2}"


def test_create_if_not_exists_and_odd_table_names(tmp_path):
    p = tmp_path / "o.sql"
    p.write_text('CREATE TABLE IF NOT EXISTS "ifaces" ("text" text, "user" text, PRIMARY KEY ("text"));\n'
                 "INSERT INTO ifaces VALUES ('a', 'b');\n", encoding="utf-8")
    assert [r.data for r in _read(p)] == [{"text": "a", "user": "b"}]
