"""Run last (see conftest): no secret the suite used shows in any component's log, in any Event, in any
TranscriptionJob's status or in any pod's termination message, nor does any presigned URL's credentials."""

from __future__ import annotations

from tests.integration.conftest import Cluster
from tests.integration.leaks import api_texts, find_leaks, log_texts

MAX_SHOWN = 40


def test_the_scan_finds_and_masks_what_it_looks_for() -> None:
    text = "ok\nGET /a?X-Amz-Credential=id%2F20250101&X-Amz-Signature=0badc0de\nkey ks_0123456789abcdef here"
    assert find_leaks({"ks_0123456789abcdef": "API key"}, [("gateway.log", text)]) == [
        "gateway.log:2: ...GET /a?X-Amz-Credential=<masked>&X-Amz-Signature=<masked>...",
        "gateway.log:3: ...key <API key> here...",
    ]


def test_no_secret_of_the_suite_leaks(cluster: Cluster) -> None:
    watch = cluster.leaks
    watch.remember_webhook_secrets(cluster, "-A")
    logs = list(log_texts(cluster.local.root))
    assert any(where.endswith("kube-apiserver.log") for where, _ in logs), "the cluster's logs were not found"
    texts = [*watch.records, *api_texts(cluster, "-A"), *logs]
    assert {"store user", "store password"} <= set(watch.secrets.values())
    leaks = find_leaks(watch.secrets, texts)
    shown = "\n".join(leaks[:MAX_SHOWN])
    assert not leaks, f"{len(leaks)} lines hold secrets or presigned URLs' credentials:\n{shown}"
