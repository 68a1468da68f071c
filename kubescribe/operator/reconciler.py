"""The operator's one decision loop. Each pass reads what the API server holds now (every TranscriptionJob, every
runner Job and pod, and Kueue's LocalQueues and Workloads when Kueue is on), admits what the queue allows (jobs
handed to Kueue skip it: their children are created at once, the runner Job suspended for Kueue to admit), creates
the children of admitted jobs, writes each job's status as computed from its children, and deletes finished jobs
whose TTL ran out. Nothing is remembered between passes, so an operator restarted at any moment carries on where
the cluster stands; creation is idempotent (deterministic names, AlreadyExists is success)."""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import json
import logging
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException
from minio import Minio
from minio.error import S3Error
from pydantic import ValidationError

from kubescribe.api.timestamps import format_timestamp, parse_timestamp
from kubescribe.api.v1alpha1 import (
    GROUP,
    KUEUE_QUEUE_LABEL,
    PLURAL,
    VERSION,
    is_finished,
    model_location,
    transcript_uris,
)
from kubescribe.contract import StoreGrants
from kubescribe.operator import builders, clients, grants, kueue, metrics, policy, webhook
from kubescribe.operator.kueue import KueueState
from kubescribe.operator.queue import plan_admission, queue_entry
from kubescribe.operator.settings import OperatorSettings
from kubescribe.operator.status import (
    EXCEEDS_GPU_QUOTA,
    INVALID_SPEC,
    compute_status,
    has_condition,
    merge_patch,
    transitions,
)

log = logging.getLogger("kubescribe.operator")

RUNNER_SELECTOR = "app.kubernetes.io/name=kubescribe,app.kubernetes.io/component=runner"
STRANDED_AFTER_SECONDS = 60
"""How long past its grace period a runner pod may stay terminating before its node counts as gone."""
STRANDED_POD_DELETED = "StrandedPodDeleted"
Key = tuple[str, str]


def _key(obj: Mapping[str, Any]) -> Key:
    return obj["metadata"]["namespace"], obj["metadata"]["labels"][builders.JOB_LABEL]


def _label_key(tj: Mapping[str, Any]) -> Key:
    """The key of a TranscriptionJob's children, as `_key` reads it from them."""
    return tj["metadata"]["namespace"], builders.job_label_value(tj)


class Reconciler:
    def __init__(
        self,
        settings: OperatorSettings,
        api: client.ApiClient,
        store: Minio,
        now: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
    ) -> None:
        self.settings = settings
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.rbac = client.RbacAuthorizationV1Api(api)
        self.now = now
        self.egress = builders.egress_rules(settings, api.configuration.host)
        self.webhooks = webhook.Deliverer(
            self.egress,
            secret=lambda namespace: webhook.namespace_secret(self.core, namespace),
            record=self._record_webhook,
            event=self._event,
        )
        self.store = store

    def reconcile(self) -> float | None:
        """One pass; returns the seconds until the next finished job's TTL runs out, if any."""
        jobs = self._list(self.batch.list_job_for_all_namespaces, self.batch.list_namespaced_job)
        jobs_by_tj = {_key(job): job for job in jobs}
        pods_by_tj: dict[Key, list[dict[str, Any]]] = defaultdict(list)
        for pod in self._list(self.core.list_pod_for_all_namespaces, self.core.list_namespaced_pod):
            pods_by_tj[_key(pod)].append(pod)
        tjs = self._list_transcription_jobs()
        live = [tj for tj in tjs if not tj["metadata"].get("deletionTimestamp")]
        judged = {(tj["metadata"]["namespace"], tj["metadata"]["name"]): self._judge(tj, jobs_by_tj) for tj in live}
        rejections = {key: rejection for key, (_, rejection) in judged.items() if rejection is not None}
        kueue_states = self._kueue_states(live, jobs_by_tj)
        plan = plan_admission(
            [
                queue_entry(tj, jobs_by_tj.get(_label_key(tj)))
                for tj in live
                if (key := (tj["metadata"]["namespace"], tj["metadata"]["name"])) not in rejections
                and key not in kueue_states
            ],
            max_running=self.settings.max_running_jobs,
            max_gpus_per_namespace=self.settings.max_gpus_per_namespace,
        )
        admit = {entry.key for entry in plan.admit}
        now = self.now()
        expiries: list[float] = []
        # Queued jobs last: after a burst of new jobs, the pass writes each one's status, and the jobs it admits or
        # that run must not wait behind those writes.
        for tj in sorted(live, key=lambda tj: (tj["metadata"]["namespace"], tj["metadata"]["name"]) in plan.positions):
            key = (tj["metadata"]["namespace"], tj["metadata"]["name"])
            label_key = _label_key(tj)
            observed = Observed(
                job=jobs_by_tj.get(label_key),
                pods=pods_by_tj.get(label_key, []),
                admitted=key in admit,
                queue_position=plan.positions.get(key),
                outputs=judged[key][0],
                rejection=rejections.get(key) or _quota_rejection(plan.rejected.get(key)),
                kueue=kueue_states.get(key),
            )
            try:
                expiry = self._reconcile_job(tj, observed, now)
            except Exception:  # one job's fault is that job's: the others carry on
                metrics.reconcile_errors.inc()
                log.exception("reconciling %s/%s failed", *key)
                continue
            if expiry is not None:
                expiries.append(expiry)
        queues = {key: state.local_queue for key, state in kueue_states.items()}
        metrics.observe_pass(live, plan, queues)
        return min(expiries, default=None)

    def _reconcile_job(self, tj: dict[str, Any], observed: Observed, now: datetime.datetime) -> float | None:
        """Creates an admitted job's children and writes its status; returns the seconds until a finished job's TTL
        runs out."""
        for pod in stranded_pods(observed.pods, now):
            self._release(tj, pod, now)
        status = self._status(tj, observed, now)
        admitted = status.get("phase") in ("Pending", "Running") and has_condition(status, "Admitted")
        if observed.job is None and (admitted or (observed.kueue is not None and status.get("phase") == "Queued")):
            try:
                refused = self._create_children(tj, observed.kueue)
            except ApiException:
                self._write_status(tj, status)  # its admission is recorded; the children are tried again
                raise
            if refused is not None:
                status = self._status(tj, dataclasses.replace(observed, rejection=refused), now)
        if observed.kueue is not None and observed.job is not None:
            self._follow_kueue(tj, status)
        self._write_status(tj, status)
        if not is_finished(status):
            return None
        finished = {**tj, "status": {**(tj.get("status") or {}), **status}}
        if webhook.is_due(finished):
            self.webhooks.submit(finished)
        return self._expire(tj, status, now)

    def _status(self, tj: dict[str, Any], observed: Observed, now: datetime.datetime) -> dict[str, Any]:
        return compute_status(
            tj,
            observed.job,
            observed.pods,
            admitted=observed.admitted,
            queue_position=observed.queue_position,
            now=now,
            expected_outputs=observed.outputs,
            rejection=observed.rejection,
            kueue=observed.kueue,
        )

    def _judge(
        self, tj: Mapping[str, Any], jobs_by_tj: Mapping[Key, Any]
    ) -> tuple[dict[str, str], policy.Refusal | None]:
        """From the job's spec, read once: the URIs of its transcripts (none when the spec cannot be read), and why
        it may never run: a spec the operator cannot read, or, while it waits for admission, one the policy forbids
        (admitted jobs keep running)."""
        namespace, name = tj["metadata"]["namespace"], tj["metadata"]["name"]
        try:
            spec = builders.runner_spec(tj, self.settings)
            outputs = transcript_uris(spec, namespace, name, self.settings.default_output_bucket)
        except ValidationError as error:
            return {}, (INVALID_SPEC, _invalid_spec_message(error))
        except Exception as error:  # one job's spec never stops the pass
            log.exception("reading the spec of %s/%s failed", namespace, name)
            return {}, (INVALID_SPEC, f"the operator cannot read the spec ({type(error).__name__})")
        status = tj.get("status")
        if is_finished(status) or has_condition(status, "Admitted") or _label_key(tj) in jobs_by_tj:
            return outputs, None
        return outputs, policy.refusal(spec, namespace, self.settings.storage, self.settings.allowed_models)

    # -- reads -------------------------------------------------------------------------------------

    def _list(self, everywhere: Callable[..., Any], in_namespace: Callable[..., Any]) -> list[dict[str, Any]]:
        """Runner objects of every namespace, or of the operator's namespaces when it has some."""
        if self.settings.namespaces:
            responses = [
                in_namespace(namespace, label_selector=RUNNER_SELECTOR, _preload_content=False)
                for namespace in self.settings.namespaces
            ]
        else:
            responses = [everywhere(label_selector=RUNNER_SELECTOR, _preload_content=False)]
        items: list[dict[str, Any]] = [item for response in responses for item in _json(response)["items"]]
        return [item for item in items if builders.JOB_LABEL in item["metadata"].get("labels", {})]

    def _list_transcription_jobs(self) -> list[dict[str, Any]]:
        return self._list_custom(GROUP, VERSION, PLURAL)

    def _list_custom(self, group: str, version: str, plural: str) -> list[dict[str, Any]]:
        if self.settings.namespaces:
            listings = [
                self.custom.list_namespaced_custom_object(group, version, namespace, plural)
                for namespace in self.settings.namespaces
            ]
        else:
            listings = [self.custom.list_cluster_custom_object(group, version, plural)]
        return [item for listing in listings for item in listing["items"]]

    def _kueue_objects(self, plural: str) -> list[dict[str, Any]]:
        """Kueue's objects of a kind; none where Kueue's API is not served (not installed, or removed)."""
        try:
            return self._list_custom(kueue.GROUP, kueue.VERSION, plural)
        except ApiException as error:
            if error.status == HTTPStatus.NOT_FOUND:
                return []
            raise

    def _kueue_states(
        self, live: list[dict[str, Any]], jobs_by_tj: Mapping[Key, dict[str, Any]]
    ) -> dict[Key, KueueState]:
        """What Kueue decided for each job that is Kueue's: one whose runner Job carries a LocalQueue (whatever put
        it there), or, while it has none and is unfinished, one that `kueue.local_queue` sends to Kueue."""
        local_queues = self._kueue_objects("localqueues") if self.settings.kueue_enabled else []
        with_default = {
            queue["metadata"]["namespace"]
            for queue in local_queues
            if queue["metadata"]["name"] == kueue.DEFAULT_LOCAL_QUEUE
        }
        queues: dict[Key, tuple[str, dict[str, Any] | None]] = {}
        for tj in live:
            job = jobs_by_tj.get(_label_key(tj))
            if job is not None:
                queue = (job["metadata"].get("labels") or {}).get(KUEUE_QUEUE_LABEL)
            elif self.settings.kueue_enabled and not is_finished(tj.get("status")):
                queue = kueue.local_queue(tj, with_default)
            else:
                queue = None
            if queue:
                queues[(tj["metadata"]["namespace"], tj["metadata"]["name"])] = (queue, job)
        if not queues:
            return {}
        workloads = kueue.workloads_by_owner(self._kueue_objects("workloads"))
        cluster_queues = kueue.cluster_queues(local_queues)
        return {
            key: kueue.kueue_state(
                queue,
                cluster_queues.get((key[0], queue)),
                workloads.get(job["metadata"]["uid"]) if job is not None else None,
            )
            for key, (queue, job) in queues.items()
        }

    # -- writes ------------------------------------------------------------------------------------

    def _create_children(self, tj: dict[str, Any], kueue_state: KueueState | None) -> policy.Refusal | None:
        """Creates what an admitted job runs with, or what a job handed to Kueue waits with (its grants come once
        Kueue admits it: `_follow_kueue`); returns why not when the API server finds a child invalid (a spec it
        reads otherwise than the CRD and the operator do). Other refusals (a quota, say) are posted as a Warning
        and raise, to be tried again."""
        creations: list[tuple[Callable[..., Any], dict[str, Any]]] = [
            (self.core.create_namespaced_service_account, builders.build_service_account(tj)),
            (self.rbac.create_namespaced_role, builders.build_role(tj)),
            (self.rbac.create_namespaced_role_binding, builders.build_role_binding(tj)),
        ]
        if builders.uses_operator_store(tj) and kueue_state is None:
            creations.append((self.core.create_namespaced_secret, builders.build_grants_secret(tj, self._grants(tj))))
        kueue_labels = None if kueue_state is None else kueue.runner_job_labels(tj, kueue_state.local_queue)
        job = builders.build_runner_job(tj, self.settings, self.egress, kueue_labels)
        creations.append((self.batch.create_namespaced_job, job))
        return self._create(tj, creations)

    def _follow_kueue(self, tj: dict[str, Any], status: Mapping[str, Any]) -> None:
        """Gives a job Kueue has just admitted its grants (presigned URLs valid from now, however long it waited),
        and takes them back from one Kueue evicted, which gets new ones when it is admitted again. Its runner pod
        waits for them, as for any Secret it names."""
        if not builders.uses_operator_store(tj):
            return
        was_admitted, admitted = has_condition(tj.get("status"), "Admitted"), has_condition(status, "Admitted")
        if admitted and not was_admitted:
            secret = builders.build_grants_secret(tj, self._grants(tj))
            refused = self._create(tj, [(self.core.create_namespaced_secret, secret)])
            if refused is not None:
                raise RuntimeError(refused[1])
        elif was_admitted and not admitted and not is_finished(status):
            try:
                self.core.delete_namespaced_secret(builders.child_name(tj), tj["metadata"]["namespace"])
            except ApiException as error:
                if error.status != HTTPStatus.NOT_FOUND:
                    raise

    def _create(
        self, tj: dict[str, Any], creations: list[tuple[Callable[..., Any], dict[str, Any]]]
    ) -> policy.Refusal | None:
        namespace = tj["metadata"]["namespace"]
        for create, body in creations:
            try:
                create(namespace, body)
            except ApiException as error:
                refusal = f"the API server refused the runner's {body['kind']}: {_api_message(error)}"
                if error.status == HTTPStatus.UNPROCESSABLE_ENTITY:
                    return INVALID_SPEC, refusal
                if error.status != HTTPStatus.CONFLICT:
                    self._event(tj, "Warning", "CreateFailed", f"{refusal}; trying again")
                    raise
        return None

    def _grants(self, tj: dict[str, Any]) -> StoreGrants:
        spec = builders.runner_spec(tj, self.settings)
        keys: list[str] = []
        error = None
        location = model_location(spec.model)
        if location is not None:
            bucket, prefix = location
            try:
                listed = self.store.list_objects(bucket, prefix=prefix, recursive=True)
                items = list(itertools.islice(listed, grants.MAX_MODEL_FILES + 1))
            except S3Error as failure:
                error = f"cannot list {spec.model}: {failure.code}"
            else:
                keys = [item.object_name for item in items]
                size = sum(item.size or 0 for item in items)
                if size > self.settings.max_model_bytes:
                    error = (
                        f"{spec.model} holds {size} bytes, more than a model may hold "
                        f"({self.settings.max_model_bytes} bytes, models.maxBytes)"
                    )
        grace = datetime.timedelta(seconds=self.settings.grant_grace_seconds)
        return grants.store_grants(spec, self._presign, self.now(), grace=grace, model_keys=keys, model_error=error)

    def _presign(self, method: str, bucket: str, key: str, valid: datetime.timedelta) -> str:
        url: str = self.store.get_presigned_url(method, bucket, key, expires=valid)
        return url

    def _write_status(self, tj: dict[str, Any], status: dict[str, Any]) -> None:
        current = tj.get("status") or {}
        changed = merge_patch(current, status)
        if not changed:
            return
        metadata = tj["metadata"]
        try:
            self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, metadata["namespace"], PLURAL, metadata["name"], {"status": changed}
            )
        except ApiException as error:
            if error.status == 404:
                return
            raise
        for kind, reason, message in transitions(current, status):
            self._event(tj, kind, reason, message)
        if is_finished(status) and not is_finished(current):
            metrics.observe_finished(status)

    def _release(self, tj: Mapping[str, Any], pod: Mapping[str, Any], now: datetime.datetime) -> None:
        """Ends a stranded runner pod and removes it at once, so that its Job starts another on a node that answers
        (a Job replaces only pods that have failed, which a lost node never reports)."""
        metadata = pod["metadata"]
        name, namespace = metadata["name"], metadata["namespace"]
        try:
            self.core.patch_namespaced_pod_status(name, namespace, builders.stranded_pod_status(format_timestamp(now)))
            self.core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
        except ApiException as error:
            if error.status == 404:
                return
            raise
        waited = (now - parse_timestamp(metadata["deletionTimestamp"])).total_seconds()
        node = pod["spec"].get("nodeName", "its node")
        self._event(
            tj,
            "Warning",
            STRANDED_POD_DELETED,
            f"runner pod {name} was still terminating {waited:.0f} s after its grace period on {node}, "
            "whose kubelet does not answer: marked Failed and removed, so that its Job runs another",
        )

    def _record_webhook(self, tj: Mapping[str, Any], record: dict[str, Any]) -> None:
        metadata = tj["metadata"]
        try:
            self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, metadata["namespace"], PLURAL, metadata["name"], {"status": {"webhook": record}}
            )
        except ApiException as error:
            if error.status != 404:  # a job deleted meanwhile needs no record
                raise

    def _expire(self, tj: dict[str, Any], status: Mapping[str, Any], now: datetime.datetime) -> float:
        """Deletes a finished job whose TTL ran out; otherwise returns the seconds left."""
        completion = status.get("completionTime")
        finished = parse_timestamp(completion) if completion else now
        ttl = tj["spec"].get("ttlSecondsAfterFinished", 7200)
        left = (finished + datetime.timedelta(seconds=ttl) - now).total_seconds()
        if left > 0:
            return left
        metadata = tj["metadata"]
        log.info("deleting %s/%s: finished more than %d s ago", metadata["namespace"], metadata["name"], ttl)
        try:
            self.custom.delete_namespaced_custom_object(GROUP, VERSION, metadata["namespace"], PLURAL, metadata["name"])
        except ApiException as error:
            if error.status != 404:
                raise
        return self.settings.resync_seconds

    def _event(self, tj: Mapping[str, Any], kind: str, reason: str, message: str) -> None:
        clients.post_event(self.core, tj, kind, reason, message, now=self.now())


def stranded_pods(pods: list[dict[str, Any]], now: datetime.datetime) -> list[dict[str, Any]]:
    """Runner pods still terminating long after their grace period: their node's kubelet is gone (a failed or
    partitioned machine). Their Job replaces a pod only once it has ended, which such a node never reports."""
    limit = datetime.timedelta(seconds=STRANDED_AFTER_SECONDS)
    return [
        pod
        for pod in pods
        if (deleted := pod["metadata"].get("deletionTimestamp"))
        and pod.get("status", {}).get("phase") not in ("Succeeded", "Failed")
        and now - parse_timestamp(deleted) > limit
    ]


@dataclass(frozen=True)
class Observed:
    """What one pass saw of a job and decided for it."""

    job: dict[str, Any] | None
    pods: list[dict[str, Any]]
    admitted: bool
    queue_position: int | None
    outputs: dict[str, str]
    """The URIs of the job's transcripts, by format: the only ones its result may name."""
    rejection: policy.Refusal | None
    kueue: KueueState | None = None
    """Kueue's decisions for a job that is Kueue's; None for the operator's own queue."""


def _invalid_spec_message(error: ValidationError) -> str:
    first = error.errors()[0]
    return f"spec.{'.'.join(str(part) for part in first['loc'])}: {first['msg']}"


def _api_message(error: ApiException) -> str:
    try:
        return str(json.loads(error.body)["message"])
    except (TypeError, ValueError, KeyError):
        return str(error.reason)


def _quota_rejection(message: str | None) -> tuple[str, str] | None:
    return None if message is None else (EXCEEDS_GPU_QUOTA, message)


def _json(response: Any) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(response.data)
    return parsed
