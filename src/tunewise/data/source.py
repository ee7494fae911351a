"""One dataset, read: the rows its reader gives, converted to records (tunewise.data.formats), in file order.

Reading is split in two so that conversion can run on the worker processes that clean (tunewise.data.parallel)
while this process reads: `read_rows` resolves the dataset and reads its rows, checking what depends on the file
as a whole (the first row's columns, the detected format, an empty file), and `row_item` turns one row into a record
or a drop entry. Rows travel as plain tuples, ("row", conversion, data, where) or ("bad", conversion, where, reason,
raw, fix) for a row the reader could not parse, where `conversion` is (format, columns, tags, system prompt, stage,
strict, source). An error found while reading travels as ("raise", error) and is raised where the stream reaches it,
so with workers the first error in file order is the one raised, as in one process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from tunewise.config.schema import PREFERENCE_STAGES, DatasetSpec
from tunewise.data import formats, preference, readers
from tunewise.data.readers import BadRow
from tunewise.errors import DataError, TunewiseError
from tunewise.fileio import read_json

Item = tuple[dict | None, dict | None]  # (record, None), or (None, drop entry) for a row that cannot be used


def _from_dataset_info(spec: DatasetSpec, info_path: str | None) -> DatasetSpec:
    """Fill path/format/columns/tags of a dataset named in a LLaMA-Factory dataset_info.json."""
    if spec.path or not spec.name:
        return spec
    if not info_path:
        raise DataError(
            f"dataset '{spec.name}' has no path and no data.dataset_info is set",
            where="data.datasets",
            fix="give the dataset a `path:`, or set data.dataset_info to your LLaMA-Factory dataset_info.json",
        )
    info = read_json(info_path)
    if spec.name not in info:
        import difflib

        close = difflib.get_close_matches(spec.name, list(info), n=3)
        raise DataError(
            f"dataset '{spec.name}' is not in dataset_info.json",
            where=str(info_path),
            fix=f"did you mean: {', '.join(close)}?" if close else f"known datasets: {', '.join(sorted(info))}",
        )
    entry = info[spec.name]
    if "file_name" not in entry:
        raise DataError(f"dataset '{spec.name}' has no file_name (hub/script datasets need network)", where=str(info_path),
                        fix="download the data and point file_name at the local file")
    path = Path(info_path).parent / entry["file_name"]
    fmt = {"alpaca": "alpaca", "sharegpt": "sharegpt", "openai": "messages"}.get(entry.get("formatting", "alpaca"), "alpaca")
    columns = dict(entry.get("columns", {}))
    if entry.get("ranking"):  # a preference set: its rows must hold both answers (checked on the first row)
        columns = {"chosen": "chosen", "rejected": "rejected", **columns}
    if fmt == "alpaca" and "prompt" in columns and "response" not in columns and len(columns) == 1:
        fmt = "text"  # LLaMA-Factory pretraining sets: columns: {prompt: text}
        columns = {"text": columns["prompt"]}
    tags = dict(entry.get("tags", {}))
    if fmt == "sharegpt" and tags.get("role_tag") == "role":
        fmt = "messages"  # OpenAI-style messages declared as sharegpt
    return spec.model_copy(update={"path": str(path), "format": fmt, "columns": {**columns, **spec.columns},
                                   "tags": {**tags, **spec.tags}})


def source_name(spec: DatasetSpec) -> str:
    return spec.name or Path(spec.path or "data").stem


def read_rows(spec: DatasetSpec, *, dataset_info: str | None, strict: bool, default_system: str | None = None,
              source: str | None = None, stage: str | None = None) -> Iterator[tuple]:
    """The rows of one dataset as the tuples `row_item` converts (see the module docstring), in file order."""
    try:
        spec = _from_dataset_info(spec, dataset_info)
        if not spec.path:
            raise DataError("dataset has neither path nor name", where="data.datasets", fix="add `path: your_file.jsonl`")
        fmt, columns, tags = spec.format, dict(spec.columns), dict(spec.tags)
        conv = (fmt, columns, tags, spec.system or default_system, stage, strict, source or source_name(spec))
        n_rows = 0
        for row in readers.read(spec.path, spec.reader, spec.options):
            n_rows += 1
            if isinstance(row, BadRow):
                yield "bad", conv, row.where, row.reason, row.raw, row.fix
                continue
            if n_rows == 1 and columns:
                try:
                    formats.check_columns(row.data, columns)
                except DataError as e:
                    raise DataError(e.what, where=row.where, fix=e.fix) from None
            if fmt == "auto":
                try:
                    fmt = formats.detect(row.data, columns)
                except DataError as e:
                    raise DataError(e.what, where=row.where, fix=e.fix) from None
                conv = (fmt, *conv[1:])
            yield "row", conv, row.data, row.where
        if n_rows == 0:
            raise DataError("no records: the file is empty (or holds only blank lines or a header)", where=str(spec.path),
                            fix="put the training records in this file, or remove it from data.datasets")
    except TunewiseError as e:
        yield "raise", e


def _bad(conv: tuple, where: str, reason: str, raw=None, fix: str | None = None, step: str = "read") -> Item:
    if conv[5]:  # strict
        raise DataError(reason, where=where, fix=fix or "fix or remove this record, or set data.strict: false to skip bad records")
    return None, {"step": step, "reason": reason, "where": where, "source": conv[6], "record": raw}


def row_item(row: tuple) -> Item:
    """A row of `read_rows` as (record, None) or (None, drop entry); strict mode raises on a bad row.

    With a stage (train.stage), records of a kind the stage cannot train on are refused: under sft or pretrain,
    preference data is an error; under a preference stage, a record without what it needs is a bad row.
    """
    if row[0] == "raise":
        raise row[1]
    conv = row[1]
    if row[0] == "bad":
        _, _, where, reason, raw, fix = row
        return _bad(conv, where, reason, raw, fix=fix or "fix the syntax of this row, or set data.strict: false to skip malformed rows")
    _, _, data, where = row
    fmt, columns, tags, system, stage, _, source = conv
    try:
        rec = formats.convert(data, fmt, columns, tags)
    except formats.RecordError as e:
        return _bad(conv, f"{where}", f"record field '{e.field}': {e.reason}", data,
                    fix=f"fix field '{e.field}' in this record, map the right column with `columns:`, or set data.strict: false")
    if system and "messages" in rec and rec["messages"][0]["role"] != "system":
        rec["messages"].insert(0, {"role": "system", "content": system})
    if stage is not None and (wrong := preference.mismatch(rec, stage)):
        if stage not in PREFERENCE_STAGES:
            raise DataError(wrong[0], where=where, fix=wrong[1])
        return _bad(conv, where, wrong[0], data, fix=f"{wrong[1]}; or set data.strict: false to skip such records", step="stage")
    rec["source"], rec["where"] = source, where
    return rec, None


def iter_dataset(spec: DatasetSpec, *, dataset_info: str | None, strict: bool, default_system: str | None = None,
                 source: str | None = None, stage: str | None = None) -> Iterator[Item]:
    """Stream one dataset as (record, None) and (None, drop entry) in file order. Strict mode raises on the first bad row."""
    for row in read_rows(spec, dataset_info=dataset_info, strict=strict, default_system=default_system, source=source,
                         stage=stage):
        yield row_item(row)
