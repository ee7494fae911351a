"""Excel reader (.xlsx/.xlsm) with openpyxl in read-only mode, so large sheets stream row by row.

The first non-empty row of the sheet (or `header_row`) names the columns. Cells become text the way
they print ("42", "3.5", "2024-01-31"); an empty cell is "". Locations read 'file:Sheet row N'.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Iterator

from tunewise.data.readers import BadRow, RawRow, register
from tunewise.errors import DataError


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, (_dt.datetime, _dt.date, _dt.time)):
        return v.isoformat()
    return str(v)


@register("excel", ".xlsx", ".xlsm", ".xls", options={
    "sheet": "sheet name, or its 0-based position; default the first sheet",
    "header_row": "row number (1-based) that holds the column names; default the first non-empty row",
})
def read_excel(path: Path, options: dict) -> Iterator[RawRow | BadRow]:
    if path.suffix.lower() == ".xls":
        raise DataError("old-style .xls workbooks are not supported", where=str(path),
                        fix="open it in Excel/LibreOffice and save as .xlsx (or export the sheet as CSV)")
    from openpyxl import load_workbook

    wb = load_workbook(path, read_only=True, data_only=True)  # data_only: the values formulas computed, not the formulas
    try:
        sheet = options.get("sheet", 0)
        if isinstance(sheet, int):
            if not 0 <= sheet < len(wb.sheetnames):
                raise DataError(f"the workbook has no sheet number {sheet}", where=str(path),
                                fix=f"sheets (0-based): {', '.join(f'{i}={n}' for i, n in enumerate(wb.sheetnames))}")
            ws = wb[wb.sheetnames[sheet]]
        elif sheet in wb.sheetnames:
            ws = wb[sheet]
        else:
            raise DataError(f"the workbook has no sheet '{sheet}'", where=str(path), fix=f"use one of: {', '.join(wb.sheetnames)}")
        header_row = options.get("header_row")
        names: list[str] | None = None
        for n, values in enumerate(ws.iter_rows(values_only=True), start=1):
            cells = [_cell(v) for v in values]
            if names is None:
                if (header_row is None and any(cells)) or n == header_row:
                    names = [c.strip() or f"column_{i + 1}" for i, c in enumerate(cells)]
                continue
            if not any(cells):
                continue
            where = f"{path}:{ws.title} row {n}"
            if len(cells) > len(names) and any(cells[len(names):]):
                yield BadRow(where, f"row has values beyond the {len(names)} named columns", repr(cells)[:200])
                continue
            yield RawRow(dict(zip(names, cells + [""] * (len(names) - len(cells)))), where)
        if names is None:
            raise DataError(f"sheet '{ws.title}' is empty", where=str(path), fix="pick the sheet with the data: options: {sheet: name}")
    finally:
        wb.close()
