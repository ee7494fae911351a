"""Text-encoding detection shared by the readers of text files (CSV, TSV, SQL dumps, plain text).

UTF-8 is tried first (random bytes are almost never valid UTF-8, so a clean decode is trustworthy);
otherwise charset-normalizer decides. Samples come from the head, middle and tail of the file, so a
large file whose first lines are plain ASCII but whose later rows are GBK is still caught.
"""

from __future__ import annotations

import codecs
from pathlib import Path

from tunewise.errors import DataError

SAMPLE = 1 << 16
# GB18030 is a strict superset of GBK and GB2312: decoding with it never fails where they would.
_WIDEN = {"gbk": "gb18030", "gb2312": "gb18030", "cp936": "gb18030", "hz": "gb18030", "ascii": "utf-8",
          "big5": "big5hkscs", "shift_jis": "cp932", "euc_kr": "cp949"}


_PREFERRED = ("gb18030", "gbk", "gb2312", "cp1252", "latin_1", "iso8859_15")


def _samples(path: Path) -> list[bytes]:
    size = path.stat().st_size
    with open(path, "rb") as f:
        out = [f.read(SAMPLE)]
        for start in (size // 2, size - SAMPLE):
            if start <= SAMPLE:
                continue
            f.seek(start)
            chunk = f.read(SAMPLE)
            # Cut at line ends: no legacy CJK encoding uses byte 0x0A inside a character.
            first, last = chunk.find(b"\n"), chunk.rfind(b"\n")
            if 0 <= first < last:
                out.append(chunk[first + 1:last + 1])
    return out


def _is_utf8(sample: bytes) -> bool:
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)  # a cut character at the end is fine
        return True
    except UnicodeDecodeError:
        return False


def detect_encoding(path: Path, explicit: str | None = None) -> str:
    """The codec name to open `path` with; `explicit` (the dataset's `options.encoding`) wins."""
    if explicit:
        try:
            return codecs.lookup(explicit).name
        except LookupError:
            raise DataError(f"unknown encoding '{explicit}'", where="data.datasets[].options.encoding",
                            fix="use a Python codec name such as utf-8, utf-8-sig, gb18030, big5, shift_jis, latin-1") from None
    samples = _samples(path)
    head = samples[0]
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    bad = next((s for s in samples if not _is_utf8(s)), None)
    if bad is None:
        return "utf-8"
    from charset_normalizer import from_bytes

    # Only the lines with non-ASCII bytes carry the evidence; a few GBK lines among thousands of ASCII
    # ones would otherwise read as Latin-1 text.
    telling = b"\n".join(line for line in bad.split(b"\n") if line and max(line) > 127)
    results = list(from_bytes(telling or bad))
    best = results[0] if results else None
    if best is not None:
        # Short samples often tie: GB18030 / CP949 / Shift-JIS for CJK, CP1250 / CP1252 / CP1257 for Latin
        # text. Ties go to the commonest source of such files (Chinese and Western Windows exports);
        # `encoding:` overrides.
        ties = [m for m in results if m.chaos <= best.chaos + 0.01 and m.coherence >= best.coherence - 0.01]
        ranked = sorted(ties, key=lambda m: _PREFERRED.index(m.encoding) if m.encoding in _PREFERRED else len(_PREFERRED))
        best = ranked[0] if ranked else best
    if best is None:
        raise DataError("cannot tell this file's text encoding", where=str(path),
                        fix="set it on the dataset, e.g. options: {encoding: gb18030} (Chinese) or {encoding: latin-1}")
    name = best.encoding.lower()
    return _WIDEN.get(name, name)


def decode_error(path: Path, encoding: str, err: UnicodeDecodeError, where: str | None = None) -> DataError:
    """A DataError for bytes that do not decode with the chosen encoding."""
    return DataError(
        f"bytes that are not valid {encoding} ({err.reason})",
        where=where or str(path),
        fix="set the right encoding on the dataset, e.g. options: {encoding: gb18030} for Chinese spreadsheets saved by Excel, "
        "or re-save the file as UTF-8",
    )
