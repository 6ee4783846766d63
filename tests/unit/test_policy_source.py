"""The policy in use: an edit to its file is taken within CHECK_EVERY seconds, a broken edit keeps
the policy in use, and the file is not looked at again within that time."""

import os

from firebreak.claims.sources import PolicySource
from firebreak.claims.store import RECEIPT_ALPHABET, new_receipt
from firebreak.resources import example


def test_an_edit_is_taken_after_the_check_interval_and_a_broken_one_keeps_the_policy(tmp_path):
    now = [100.0]
    path = tmp_path / "policy.yaml"
    text = example("kakao-2022-policy.yaml").read_text()
    path.write_text(text)
    src = PolicySource(str(path), clock=lambda: now[0])
    first = src()
    path.write_text(text.replace("approve_all_confirm_over:", "approve_all_confirm_over: 1234 #", 1))
    os.utime(path, (1, 1))   # a new mtime whatever the filesystem's resolution
    now[0] += 0.5
    assert src() is first                       # not looked at yet
    now[0] += 0.6
    reloaded = src()
    assert reloaded is not first and reloaded.approve_all_confirm_over == 1234   # reloaded
    path.write_text("rules: [")
    os.utime(path, (2, 2))
    now[0] += 1.1
    assert src() is reloaded                    # broken: the one in use stays


def test_receipts_are_ten_letters_of_the_alphabet_and_differ():
    receipts = {new_receipt() for _ in range(2000)}
    assert len(receipts) == 2000
    assert all(r.startswith("FB-") and len(r) == 13 and set(r[3:]) <= set(RECEIPT_ALPHABET) for r in receipts)
    # every letter turns up in every position (5 bits a letter, none left out)
    assert all({r[3 + i] for r in receipts} == set(RECEIPT_ALPHABET) for i in range(10))
