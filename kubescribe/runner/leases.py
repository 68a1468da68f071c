"""The `coordination.k8s.io` Leases by which a pool's workers claim RunnerAssignments: the one worker whose create
succeeds runs the assignment, renews the Lease while it runs, and never takes over another holder's."""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kubescribe.api.pools import ASSIGNMENT_KIND, LEASE_SECONDS

NOT_FOUND = 404
CONFLICT = 409


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def micro_time(moment: datetime.datetime) -> str:
    """A MicroTime as the API server parses it: RFC 3339 in UTC with exactly six digits of fraction."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Lease:
    """A Lease this worker holds: the assignment it claims, and when."""

    name: str
    assignment_uid: str
    acquired: datetime.datetime


def lease_body(lease: Lease, namespace: str, holder: str, renewed: datetime.datetime) -> dict[str, Any]:
    """The Lease object: held by `holder`, renewed at `renewed`, owned by its assignment so that it goes with it."""
    owner = {
        "apiVersion": "kubescribe.io/v1alpha1",
        "kind": ASSIGNMENT_KIND,
        "name": lease.name,
        "uid": lease.assignment_uid,
    }
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": lease.name, "namespace": namespace, "ownerReferences": [owner]},
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": LEASE_SECONDS,
            "acquireTime": micro_time(lease.acquired),
            "renewTime": micro_time(renewed),
        },
    }


class Leases:
    """Claims and renewals of the Leases of one namespace's assignments, as `holder`."""

    def __init__(
        self,
        api: client.CoordinationV1Api,
        namespace: str,
        holder: str,
        now: Callable[[], datetime.datetime] = utc_now,
    ) -> None:
        self._api = api
        self._namespace = namespace
        self._holder = holder
        self._now = now

    def claim(self, assignment: Mapping[str, Any]) -> Lease | None:
        """The assignment's Lease, created with this worker as holder; None when another worker's create came first."""
        metadata = assignment["metadata"]
        now = self._now()
        lease = Lease(metadata["name"], metadata["uid"], now)
        try:
            self._api.create_namespaced_lease(self._namespace, lease_body(lease, self._namespace, self._holder, now))
        except ApiException as error:
            if error.status == CONFLICT:
                return None
            raise
        return lease

    def renew(self, lease: Lease) -> bool:
        """Whether the Lease is still this worker's, its renewal time now moved on. False when it is gone or another's;
        an unexpected answer of the API raises."""
        try:
            return self._renew(lease)
        except ApiException as error:
            if error.status != CONFLICT:
                raise
        return self._renew(lease)  # it changed between the read and the write: once more

    def _renew(self, lease: Lease) -> bool:
        try:
            found = self._api.read_namespaced_lease(lease.name, self._namespace)
            if found.spec.holder_identity != self._holder:
                return False
            body = lease_body(lease, self._namespace, self._holder, self._now())
            body["metadata"]["resourceVersion"] = found.metadata.resource_version
            self._api.replace_namespaced_lease(lease.name, self._namespace, body)
        except ApiException as error:
            if error.status == NOT_FOUND:
                return False
            raise
        return True
