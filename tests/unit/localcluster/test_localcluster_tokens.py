"""A pod's ServiceAccount token on the local node: in its service account volume, and replaced before it expires, as
a kubelet replaces a projected token."""

import itertools
from pathlib import Path
from types import SimpleNamespace

import pytest

from localcluster.nodeagent import environment
from localcluster.nodeagent.environment import TOKEN_RENEWAL_SHARE, TOKEN_SECONDS, PodEnvironment

POD = {"metadata": {"name": "gateway-1", "namespace": "kubescribe", "uid": "u-1"}, "spec": {"serviceAccountName": "gw"}}


class Agent(SimpleNamespace):
    """The node agent's part a pod's environment uses: each token it is asked for is a new one."""

    def __init__(self, ca_file: Path) -> None:
        super().__init__(node="node-1", server="https://127.0.0.1:6443", ca_file=ca_file)
        self.issued = (f"token-{n}" for n in itertools.count(1))
        self.accounts: list[str] = []

    def service_account_token(self, pod: dict, account: str) -> str:
        self.accounts.append(account)
        return next(self.issued)


def test_a_pods_token_is_replaced_once_most_of_its_life_has_passed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(environment.time, "monotonic", lambda: now[0])
    (tmp_path / "ca.crt").write_text("the cluster's CA")
    agent = Agent(tmp_path / "ca.crt")
    pod_environment = PodEnvironment(agent, tmp_path / "pod")
    (tmp_path / "pod").mkdir()
    volume = pod_environment.service_account_directory(POD)
    token = volume / "token"
    assert (token.read_text(), oct(token.stat().st_mode & 0o777)) == ("token-1", "0o644")
    assert (volume / "ca.crt").read_text() == "the cluster's CA"
    assert (volume / "namespace").read_text() == "kubescribe"

    now[0] += TOKEN_SECONDS * TOKEN_RENEWAL_SHARE - 1
    pod_environment.renew_token(POD)
    assert pod_environment.service_account_directory(POD) == volume
    assert token.read_text() == "token-1"

    now[0] += 1
    pod_environment.renew_token(POD)
    assert token.read_text() == "token-2"
    assert agent.accounts == ["gw", "gw"]
