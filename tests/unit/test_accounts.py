"""The accounts file: the contract's columns, each bad row named by line and field, and the
numbers a policy rule prices with required where that rule applies."""

import polars as pl
import pytest

from firebreak.claims.accounts import check_accounts, pg_array, read_accounts
from firebreak.claims.policy import load_policy
from firebreak.errors import InputError
from tests.conftest import ROOT

KAKAO = load_policy(ROOT / "examples/kakao-2022-policy.yaml")
HEADER = "account,kind,monthly_fee,services,sales_per_hour\n"


def test_the_shipped_sample_reads_as_typed_columns():
    a = read_accounts(ROOT / "examples/accounts-sample.csv", KAKAO)
    row = a.frame.row(0, named=True)
    assert row == {"account": "u-1001", "kind": "paid_user", "monthly_fee": 3900, "services": "messenger;mail",
                   "sales_per_hour": None}
    assert a.frame.filter(pl.col("account") == "p-2001")["sales_per_hour"].item() == 18000
    assert len(a.sha256) == 64


def test_parquet_with_the_same_columns_reads_the_same(tmp_path):
    a = read_accounts(ROOT / "examples/accounts-sample.csv", KAKAO)
    a.frame.with_columns(pl.col("kind").cast(pl.String), pl.col("services").cast(pl.String)).write_parquet(
        tmp_path / "a.parquet")
    b = read_accounts(tmp_path / "a.parquet", KAKAO)
    assert b.frame.with_columns(pl.col("services").cast(pl.String)).equals(
        a.frame.with_columns(pl.col("services").cast(pl.String)))


BAD = [
    ("u-1,paid_usr,3900,messenger,\n", "line 2: kind: unknown kind 'paid_usr' (did you mean 'paid_user'?)"),
    ("u-1,paid_user,3,900,messenger,\n", "line 2: has 6 fields where the header has 5"),   # a stray comma
    ("u-1,paid_user,39x0,messenger,\n", "line 2: monthly_fee: expected a whole number of won (no separators), got '39x0'"),
    ("u-1,paid_user,-1,messenger,\n", "line 2: monthly_fee: must be between 0 and"),
    ("u-1,paid_user,3900,mesenger,\n", "line 2: services: service 'mesenger' is not one of the policy's"),
    ("u-1,paid_user,3900,,\n", "line 2: services: empty; list the services the account uses"),
    (",free_user,,messenger,\n", "line 2: account: empty"),
    ("u-1,free_user,,messenger,\nu-2,free_user,,messenger,\nu-1,free_user,,maps,\n",
     "line 4: account: 'u-1' is also on line 2; one row per account"),
    ("u-1,paid_user,,messenger,\n", "line 2: monthly_fee: empty, but rule 'paid-user' pays a paid_user a share of "
                                    "the account's monthly fee"),
    ("p-1,taxi_driver,,taxi,\n", "line 2: sales_per_hour: empty, but rule 'partner-sales' pays a taxi_driver its "
                                 "declared sales per hour"),
]


@pytest.mark.parametrize("rows,expected", BAD, ids=[b[1][:40] for b in BAD])
def test_a_bad_row_is_named_by_line_and_field(tmp_path, rows, expected):
    (tmp_path / "a.csv").write_text(HEADER + rows)
    with pytest.raises(InputError) as e:
        read_accounts(tmp_path / "a.csv", KAKAO)
    lines = [str(p) for p in e.value.problems]
    assert any(expected in line for line in lines), lines
    assert all(line.startswith(str(tmp_path / "a.csv")) for line in lines)


def test_missing_columns_and_missing_files(tmp_path):
    (tmp_path / "a.csv").write_text("account,kind\nu-1,free_user\n")
    with pytest.raises(InputError, match="line 1: missing columns: monthly_fee, services, sales_per_hour"):
        read_accounts(tmp_path / "a.csv", KAKAO)
    with pytest.raises(InputError, match="file not found"):
        read_accounts(tmp_path / "none.csv", KAKAO)


def test_numbers_for_kinds_they_do_not_apply_to_may_be_empty_and_are_unused():
    raw = pl.DataFrame({"account": ["f", "p"], "kind": ["free_user", "paid_user"], "monthly_fee": ["", "0"],
                        "services": ["messenger", "messenger; mail"], "sales_per_hour": ["", ""]})
    a = check_accounts(raw, KAKAO, "mem")
    assert a.frame["monthly_fee"].to_list() == [None, 0]


def test_services_become_a_quoted_postgresql_array():
    assert pg_array("messenger; mail") == '{"messenger","mail"}'
    assert pg_array('a"b') == '{"a\\"b"}'


def test_more_spellings_of_services_than_a_uint16_holds_are_read(tmp_path):
    """70,000 distinct services cells (each account's services in an order of its own) once made
    the index table overflow: a traceback instead of the accounts."""
    import itertools
    names = KAKAO.services
    cells = [";".join(p) for p in itertools.islice(itertools.product(names, repeat=6), 70_000)]
    (tmp_path / "a.csv").write_text(HEADER + "".join(f"u-{i},free_user,,{c},\n" for i, c in enumerate(cells)))
    a = read_accounts(tmp_path / "a.csv", KAKAO)
    assert len(a.service_lists) == 70_000
    picked = a.frame.with_row_index("i").filter(pl.col("i").is_in([0, 65_536, 69_999]))
    assert [a.service_lists[a.service_index[i]] for i in picked["i"].to_list()] == \
        picked["services"].cast(pl.String).to_list()
