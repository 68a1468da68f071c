"""What the uninstall hook removes: the operator's finalizer, and only it, only where it was seen."""

from kubescribe.contract import CLEANUP_FINALIZER
from kubescribe.operator.uninstall import finalizer_removal


def job(*finalizers: str) -> dict:
    return {"metadata": {"name": "talk", "namespace": "team-a", "finalizers": list(finalizers)}}


def test_the_operators_finalizer_is_removed_where_it_was_seen():
    assert finalizer_removal(job("example.com/keep", CLEANUP_FINALIZER)) == [
        {"op": "test", "path": "/metadata/finalizers/1", "value": CLEANUP_FINALIZER},
        {"op": "remove", "path": "/metadata/finalizers/1"},
    ]


def test_a_job_without_it_is_left_alone():
    assert finalizer_removal(job()) is None
    assert finalizer_removal(job("example.com/keep")) is None
    assert finalizer_removal({"metadata": {"name": "talk", "namespace": "team-a"}}) is None
