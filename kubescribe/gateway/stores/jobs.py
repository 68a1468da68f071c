"""The TranscriptionJobs the gateway submitted, in Kubernetes: the blocking calls on them (run them in a thread)."""

from __future__ import annotations

from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from kubescribe.api.v1alpha1 import GROUP, PLURAL, VERSION

SUBMITTED_BY_LABEL = "kubescribe.io/submitted-by"
SUBMITTED_BY_GATEWAY = {SUBMITTED_BY_LABEL: "gateway"}
"""The label of every job the gateway creates; the gateway answers about no other job."""


class JobStore:
    def __init__(self, api_client: client.ApiClient) -> None:
        self._api_client = api_client
        self._jobs = client.CustomObjectsApi(api_client)

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The job, if it exists and the gateway submitted it."""
        try:
            job: dict[str, Any] = self._jobs.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        labels = job["metadata"].get("labels") or {}
        return job if labels.items() >= SUBMITTED_BY_GATEWAY.items() else None

    def list(self, namespace: str, labels: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """The namespace's jobs, or those of them with `labels` too."""
        selector = ",".join(f"{key}={value}" for key, value in {**SUBMITTED_BY_GATEWAY, **(labels or {})}.items())
        listed = self._jobs.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, label_selector=selector)
        items: list[dict[str, Any]] = listed["items"]
        return items

    def create(self, job: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        """Creates the job; with `dry_run`, only asks whether the API server (its schema and admission, the storage
        policy included) would."""
        created: dict[str, Any] = self._jobs.create_namespaced_custom_object(
            GROUP, VERSION, job["metadata"]["namespace"], PLURAL, job, **({"dry_run": "All"} if dry_run else {})
        )
        return created

    def delete(self, namespace: str, name: str) -> None:
        """Deletes the job (the operator then deletes its audio and transcripts); a job already gone is no error."""
        try:
            self._jobs.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except ApiException as error:
            if error.status != 404:
                raise

    def reachable(self) -> bool:
        try:
            client.VersionApi(self._api_client).get_code(_request_timeout=3)
        except Exception:
            return False
        return True
