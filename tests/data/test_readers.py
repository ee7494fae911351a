"""Readers on real-looking files: saved web pages, Excel's CSV exports (GBK, UTF-8 BOM), xlsx, SQLite, parquet."""

import pytest

import fixtures_writer as fx
from tunewise.data import readers
from tunewise.data.readers import BadRow, RawRow
from tunewise.errors import DataError


def _read(path, reader=None, **options):
    return list(readers.read(path, reader, options))


def _good(rows):
    return [r for r in rows if isinstance(r, RawRow)]


# --------------------------------------------------------------------------- registry
def test_unknown_reader_and_option_fail_loudly(tmp_path):
    p = fx.gbk_csv(tmp_path / "zh.csv")
    with pytest.raises(DataError) as e:
        _read(p, "cvs")
    assert "did you mean 'csv'" in str(e.value) and "html" in str(e.value) and "sqlite" in str(e.value)
    with pytest.raises(DataError, match=r"(?s)no option 'encodng'.*did you mean 'encoding'"):
        _read(p, encodng="gbk")
    weird = tmp_path / "x.weird"
    weird.write_text("a")
    with pytest.raises(DataError, match=r"(?s)no reader for this file type.*\.csv.*reader:"):
        _read(weird)
    assert {"csv", "tsv", "excel", "html", "json", "jsonl", "parquet", "sql", "sqlite", "text"} <= set(readers.names())


def test_folder_reads_every_known_file_in_name_order(tmp_path):
    (tmp_path / "pages").mkdir()
    fx.saved_web_page(tmp_path / "pages" / "b.html")
    fx.saved_web_page(tmp_path / "pages" / "a.htm")
    (tmp_path / "pages" / "notes.unknown").write_text("skip me")
    rows = _read(tmp_path / "pages")
    assert [r.where.split("/")[-1] for r in rows] == ["a.htm:1", "b.html:1"]


# --------------------------------------------------------------------------- html
def test_html_main_text_drops_page_chrome(tmp_path):
    (row,) = _read(fx.saved_web_page(tmp_path / "tea.html"))
    text = row.data["text"]
    assert row.data["title"] == "Brewing green tea | Tea Guide"
    assert text.startswith("Brewing green tea\n")
    assert "water is not boiling: about 80 °C." in text  # inline <b> stays inline, &nbsp; is a space
    assert "Let it steep for two minutes." in text.splitlines()  # <br> breaks the line
    assert "It scalds the leaves & makes the tea bitter." in text
    for junk in ("Sign in", "Shop", "About us", "Guides", "TRACKING-CODE", "font-family", "Related", "cookies",
                 "Privacy", "trackPage", "Enable JavaScript"):
        assert junk not in text, junk


def test_html_selectors_make_records(tmp_path):
    page = fx.saved_web_page(tmp_path / "tea.html")
    rows = _read(page, selectors={"item": "div.qa", "prompt": ".q", "response": ".a"})
    assert [r.data for r in rows][0] == {"prompt": "Why not boiling water?", "response": "It scalds the leaves & makes the tea bitter."}
    assert [r.where for r in rows] == [f"{page}:item {i}" for i in (1, 2, 3)]
    paired = _read(page, selectors={"prompt": "h3.q", "response": "p.a", "link": "a.logo@href"})
    assert isinstance(paired[0], BadRow) and "prompt: 3, response: 3, link: 1" in paired[0].reason
    nothing = _read(page, selectors={"item": "div.nope", "prompt": "h3"})
    assert isinstance(nothing[0], BadRow) and "matched nothing" in nothing[0].reason


# --------------------------------------------------------------------------- csv / tsv / excel
def test_gbk_csv_from_chinese_excel(tmp_path):
    p = fx.gbk_csv(tmp_path / "zh.csv")
    rows = _read(p)
    assert [r.data for r in rows] == [{"问题": q, "答案": a} for q, a in fx.QA_ZH]
    assert rows[0].where == f"{p}:row 2"
    with pytest.raises(DataError) as e:
        _read(p, encoding="utf-8")
    assert "not valid utf-8" in str(e.value) and "gb18030" in str(e.value)


def test_gbk_detected_even_when_the_first_64k_are_ascii(tmp_path):
    p = tmp_path / "late.csv"
    rows = ["q,a"] + [f"question {i},answer {i}" for i in range(6000)] + [f"{q},{a}" for q, a in fx.QA_ZH]
    p.write_bytes("\n".join(rows).encode("gbk"))
    assert p.stat().st_size > 2 * 65536
    got = _read(p)
    assert got[-1].data == {"q": fx.QA_ZH[-1][0], "a": fx.QA_ZH[-1][1]} and len(got) == 6003


def test_bom_csv_quotes_multiline_and_malformed_row(tmp_path):
    p = fx.bom_csv(tmp_path / "en.csv")
    rows = _read(p)
    assert list(rows[0].data) == ["question", "answer"]  # no BOM glued to the first header
    assert rows[2].data == {"question": "Two lines, one answer?", "answer": "First line,\nsecond line."}
    bad = [r for r in rows if isinstance(r, BadRow)]
    assert [(b.where, b.reason) for b in bad] == [(f"{p}:row 5", "malformed CSV row: expected 2 fields, saw 3")]
    assert _good(rows)[-1].where == f"{p}:row 6"
    # chunked reading gives the same rows and numbers
    assert [(r.where, getattr(r, "data", None)) for r in _read(p, chunk_rows=1)] == [(r.where, getattr(r, "data", None)) for r in rows]


def test_tsv_and_explicit_separator(tmp_path):
    t = tmp_path / "a.tsv"
    t.write_text("prompt\tresponse\nhi, there\tyo; ok\n", encoding="utf-8")
    assert _read(t)[0].data == {"prompt": "hi, there", "response": "yo; ok"}
    s = tmp_path / "semi.csv"
    s.write_text("prompt;response\nhello;world\n", encoding="utf-8")
    assert _read(s)[0].data == {"prompt": "hello", "response": "world"}  # sniffed
    assert _read(s, sep=",")[0].data == {"prompt;response": "hello;world"}


def test_xlsx_sheet_rows_and_types(tmp_path):
    p = fx.xlsx(tmp_path / "faq.xlsx")
    rows = _read(p)
    assert [r.data["Antwort"] for r in rows] == ["Schau auf die Uhr.", "42", "Paris."]
    assert [r.where for r in rows] == [f"{p}:FAQ row {n}" for n in (2, 4, 5)]
    assert _read(p, sheet="Notes") == []
    with pytest.raises(DataError, match=r"(?s)no sheet .Nope.*FAQ, Notes"):
        _read(p, sheet="Nope")
    old = tmp_path / "old.xls"
    old.write_bytes(b"\xd0\xcf\x11\xe0")
    with pytest.raises(DataError, match="save as .xlsx"):
        _read(old)


def test_damaged_file_is_a_data_error_not_a_traceback(tmp_path):
    p = tmp_path / "broken.xlsx"
    p.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError) as e:
        _read(p)
    assert e.value.where == str(p) and "excel" in e.value.what and e.value.fix


# --------------------------------------------------------------------------- sqlite / parquet
def test_sqlite_table_query_and_read_only(tmp_path):
    db = fx.sqlite_db(tmp_path / "kb.sqlite")
    with pytest.raises(DataError, match=r"2 tables \(authors, faq\)"):
        _read(db)
    rows = _read(db, table="faq")
    assert len(rows) == 4 and rows[0].data["q"] == fx.QA_EN[0][0] and rows[0].where == f"{db}:faq row 1"
    sel = _read(db, query="SELECT q AS prompt, a AS response FROM faq WHERE published = 1")
    assert [r.data for r in sel] == [{"prompt": q, "response": a} for q, a in fx.QA_EN]
    with pytest.raises(DataError, match="readonly"):
        _read(db, query="DELETE FROM faq")
    with pytest.raises(DataError, match="no such column: nope"):
        _read(db, query="SELECT nope FROM faq")
    fake = tmp_path / "x.db"
    fake.write_text("hello")
    with pytest.raises(DataError, match="not an SQLite database"):
        _read(fake)


def test_parquet_nested_messages(tmp_path):
    p = fx.parquet(tmp_path / "chat.parquet")
    rows = _read(p, batch_rows=2)
    assert len(rows) == 6 and rows[3].where == f"{p}:row 4"
    assert rows[0].data["messages"][1] == {"role": "assistant", "content": fx.QA_EN[0][1]}
    with pytest.raises(DataError, match="no column.*nope"):
        _read(p, columns=["nope"])


def test_western_legacy_csv_and_unclosed_quote(tmp_path):
    p = tmp_path / "fr.csv"
    p.write_bytes("question,réponse\ncafé?,naïve résumé\n".encode("cp1252"))
    assert _read(p)[0].data == {"question": "café?", "réponse": "naïve résumé"}
    q = tmp_path / "quote.csv"
    q.write_text('a,b\n"never closed,1\n2,3\n', encoding="utf-8")
    with pytest.raises(DataError) as e:
        _read(q)
    # the quote opens in row 2 (the header is row 1), the row a spreadsheet shows it in
    assert e.value.where == f"{q}:row 2" and "never closed" in e.value.what and "quote" in e.value.fix
