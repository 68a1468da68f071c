"""The liveness endpoint fails once the reconcile loop has not finished a pass for `stall_seconds`."""

import time

import kopf
import pytest

from kubescribe.operator.handlers import reconcile_loop
from kubescribe.operator.settings import OperatorSettings


def memo(seconds_since_pass: float) -> kopf.Memo:
    return kopf.Memo(settings=OperatorSettings(stall_seconds=300), last_pass=time.monotonic() - seconds_since_pass)


def test_a_loop_that_finished_a_pass_lately_is_alive():
    assert reconcile_loop(memo=memo(20)) == "a pass finished 20 s ago"


def test_a_loop_without_a_pass_for_longer_than_the_stall_limit_fails_the_probe():
    with pytest.raises(kopf.PermanentError, match="the reconcile loop has not finished a pass for 301 s"):
        reconcile_loop(memo=memo(301))
