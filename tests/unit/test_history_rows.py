"""History and bulk rows without a database: field paths to columns, red bills,
the COPY text encoding, spreadsheet cells."""

from __future__ import annotations

from datetime import datetime

from bench.history_data import history_rows, red_row
from storage.history import copy_text
from usecases.bulk import _cell
from usecases.history_rows import RowError, check_row, column_of, csv_rows


def test_field_paths_name_their_csv_column() -> None:
    assert column_of("bill.payer.name", "csv") == "payer_name"
    assert column_of("bill.charge_items[3].amt", "csv") == "charge_items"
    assert column_of("bill.list_items[0].amt", "csv") == "charge_items"
    assert column_of("red_of.bill_no", "csv") == "red_of_bill_no"
    assert column_of("bill.payer.name", "jsonl") == "bill.payer.name"


def test_a_red_bill_has_negative_amounts_and_names_its_original() -> None:
    [row] = list(history_rows(1))
    red = red_row(row, "R1", "abcdef", "0000000009")
    staged = check_row(red, 2, "jsonl")
    assert not isinstance(staged, list), staged
    assert staged[9] < 0 and staged[20:22] == (row["bill_code"], row["bill_no"])
    positive = dict(red, bill=dict(red["bill"], total_amount=row["bill"]["total_amount"]))
    errors = check_row(positive, 2, "jsonl")
    assert isinstance(errors, list)
    assert [e.column for e in errors] == ["bill.total_amount"]


def test_every_problem_of_a_row_is_reported_at_once() -> None:
    [row] = list(history_rows(1))
    bad = dict(row, bill_no="12", check_code="", issued_at="2025-01-01T08:00:00")
    errors = check_row(bad, 7, "jsonl")
    assert isinstance(errors, list)
    assert {(e.row_no, e.column) for e in errors} == {
        (7, "bill_no"), (7, "check_code"), (7, "issued_at"),
    }  # fmt: skip


def test_a_csv_without_the_key_columns_is_refused_whole() -> None:
    [(n, err)] = list(csv_rows(["a,b\n", "1,2\n"]))
    assert n == 0 and isinstance(err, RowError) and err.column == "bill_code"


def test_copy_text_escapes_what_copy_would_misread() -> None:
    data = copy_text(
        5, [(1, "a\tb\\c\nd", None, b"\x00\xff", ['x"y', "z"], {"k": "v\\"}, datetime(2025, 1, 2))]
    )
    assert data == (
        b'5\t1\ta\\tb\\\\c\\nd\t\\N\t\\\\x00ff\t{"x\\\\"y","z"}\t{"k":"v\\\\\\\\"}'
        b"\t2025-01-02T00:00:00\n"
    )


def test_spreadsheet_numbers_are_read_as_the_decimal_shown() -> None:
    assert _cell(12.3) == "12.3" and _cell(0.1 + 0.2) == "0.30000000000000004"
    assert _cell(45) == "45" and _cell(None) == ""
    assert _cell(datetime(2026, 11, 23, 9, 30, 0, 123000)) == "20261123093000123"
