"""The operator's one decision loop. Each pass reads what the API server holds now (every TranscriptionJob, every
runner Job and pod, and Kueue's LocalQueues and Workloads when Kueue is on), admits what the queue allows (jobs
handed to Kueue skip it: their children are created at once, the runner Job suspended for Kueue to admit), creates
the children of admitted jobs, or sends them to a RunnerPool (`pools.assign`) with a RunnerAssignment, writes each
job's status as computed from its children or assignments, keeps each pool's workers (a Deployment) sized to its
jobs, and deletes finished jobs whose TTL ran out. Nothing is remembered between passes, so an operator restarted
at any moment carries on where the cluster stands; creation is idempotent (deterministic names, AlreadyExists is
success)."""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import json
import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException
from minio import Minio
from minio.error import S3Error
from pydantic import ValidationError

from kubescribe.api.pools import ASSIGNMENT_PLURAL, POOL_LABEL, POOL_PLURAL, RunnerPool
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
from kubescribe.operator import builders, clients, grants, kueue, metrics, policy, pools, webhook
from kubescribe.operator.kueue import KueueState
from kubescribe.operator.queue import plan_admission, queue_entry
from kubescribe.operator.settings import OperatorSettings
from kubescribe.operator.status import (
    EXCEEDS_GPU_QUOTA,
    INVALID_SPEC,
    compute_pooled_status,
    compute_status,
    has_condition,
    merge_patch,
    pooled_attempts,
    transitions,
)

log = logging.getLogger("kubescribe.operator")

RUNNER_SELECTOR = "app.kubernetes.io/name=kubescribe,app.kubernetes.io/component=runner"
STRANDED_AFTER_SECONDS = 60
"""How long past its grace period a runner pod may stay terminating before its node counts as gone."""
STRANDED_POD_DELETED = "StrandedPodDeleted"
LEASE_CHECK_MARGIN_SECONDS = 1.0
"""How long after a Lease should have been renewed the operator looks at it again."""
_NO_POOL_CAPACITY = (pools.NO_POOL_CAPACITY, "execution Pooled: waiting for room in a RunnerPool that serves the job")
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
        self.apps = client.AppsV1Api(api)
        self.coordination = client.CoordinationV1Api(api)
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
        pooled = self._read_pools()  # after the jobs: an assignment listed has its job listed, unless it is gone
        live = [tj for tj in tjs if not tj["metadata"].get("deletionTimestamp")]
        self._delete_orphans(pooled, {tj["metadata"]["uid"] for tj in live})
        judged = {(tj["metadata"]["namespace"], tj["metadata"]["name"]): self._judge(tj, jobs_by_tj) for tj in live}
        rejections = {key: rejection for key, (_, rejection) in judged.items() if rejection is not None}
        kueue_states = self._kueue_states(live, jobs_by_tj)
        unplaced = {
            key: tj
            for tj in live
            if (key := (tj["metadata"]["namespace"], tj["metadata"]["name"])) not in rejections
            and _label_key(tj) not in jobs_by_tj
            and not pooled.assignments.get(tj["metadata"]["uid"])
            and not is_finished(tj.get("status"))
        }
        pool_jobs = {key: self._pool_job(tj, key in kueue_states) for key, tj in unplaced.items()}
        for key, job in pool_jobs.items():
            if not has_condition(unplaced[key].get("status"), "Admitted") and (refused := pools.refusal(job)):
                rejections[key] = refused
        rooms = pooled.rooms()
        waiting = pools.without_room([job for key, job in pool_jobs.items() if key not in rejections], rooms)
        plan = plan_admission(
            [
                queue_entry(tj, jobs_by_tj.get(_label_key(tj)))
                for tj in live
                if (key := (tj["metadata"]["namespace"], tj["metadata"]["name"])) not in rejections
                and key not in kueue_states
                and key not in waiting
            ],
            max_running=self.settings.max_running_jobs,
            max_gpus_per_namespace=self.settings.max_gpus_per_namespace,
        )
        admit = {entry.key for entry in plan.admit}
        admitted_before = [key for key, tj in unplaced.items() if has_condition(tj.get("status"), "Admitted")]
        placements = pools.assign(
            [
                pool_jobs[key]
                for key in [entry.key for entry in plan.admit] + admitted_before
                if key not in kueue_states and key not in rejections
            ],
            rooms,
        )
        waiting |= {key for key, placement in placements.items() if placement is None}
        admit -= waiting
        now = self.now()
        expiries: list[float] = []
        # Queued jobs last: after a burst of new jobs, the pass writes each one's status, and the jobs it admits or
        # that run must not wait behind those writes.
        for tj in sorted(live, key=lambda tj: (tj["metadata"]["namespace"], tj["metadata"]["name"]) in plan.positions):
            key = (tj["metadata"]["namespace"], tj["metadata"]["name"])
            label_key = _label_key(tj)
            assignments = pooled.assignments.get(tj["metadata"]["uid"], [])
            pool_name = max(assignments, key=_attempt)["spec"]["pool"] if assignments else placements.get(key)
            observed = Observed(
                job=jobs_by_tj.get(label_key),
                pods=pods_by_tj.get(label_key, []),
                admitted=key in admit,
                queue_position=plan.positions.get(key),
                outputs=judged[key][0],
                rejection=rejections.get(key) or _quota_rejection(plan.rejected.get(key)),
                kueue=kueue_states.get(key),
                assignments=assignments,
                leases=pooled.leases,
                pool=pooled.runner_pools.get(pool_name or ""),
                waiting=_NO_POOL_CAPACITY if key in waiting else None,
            )
            try:
                expiry = self._reconcile_job(tj, observed, now)
            except Exception:  # one job's fault is that job's: the others carry on
                metrics.reconcile_errors.inc()
                log.exception("reconciling %s/%s failed", *key)
                continue
            if expiry is not None:
                expiries.append(expiry)
        placed = Counter(placement for placement in placements.values() if placement not in (None, pools.POD))
        waiting_for = Counter(pools.waiting_pool(pool_jobs[key], rooms) for key in waiting if key in pool_jobs)
        for name, pool in pooled.runner_pools.items():
            try:
                self._keep_pool(
                    pool, pooled.deployments.get(name), pooled.running[name] + placed[name], waiting_for[name]
                )
            except Exception:  # one pool's fault is that pool's
                metrics.reconcile_errors.inc()
                log.exception("keeping pool %s failed", name)
        queues = {key: state.local_queue for key, state in kueue_states.items()}
        metrics.observe_pass(live, plan, queues)
        return min(expiries, default=None)

    def _reconcile_job(self, tj: dict[str, Any], observed: Observed, now: datetime.datetime) -> float | None:
        """Creates an admitted job's children, or its assignment in the pool it is sent to, and writes its status;
        returns the seconds until a finished job's TTL runs out, or until a pooled job's Lease or deadline does."""
        if observed.assignments:
            return self._reconcile_pooled(tj, observed.assignments, observed, now)
        for pod in stranded_pods(observed.pods, now):
            self._release(tj, pod, now)
        status = self._status(tj, observed, now)
        admitted = status.get("phase") in ("Pending", "Running") and has_condition(status, "Admitted")
        if observed.job is None and admitted and observed.pool is not None:
            created, refused = self._assign(tj, observed.pool, attempt=1)
            if refused is None:
                return self._reconcile_pooled(tj, [created], observed, now)
            status = self._status(tj, dataclasses.replace(observed, rejection=refused), now)
        elif observed.job is None and (admitted or (observed.kueue is not None and status.get("phase") == "Queued")):
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
        return self._finish(tj, status, now)

    def _reconcile_pooled(
        self, tj: dict[str, Any], assignments: list[dict[str, Any]], observed: Observed, now: datetime.datetime
    ) -> float | None:
        """Runs a pooled job's next attempt when its last one failed or was lost, deletes lost assignments (after
        the next one is made: their number counts the losses), and writes its status."""
        attempts = pooled_attempts(tj, assignments, observed.leases, now)
        if attempts.retry is not None and observed.pool is not None:
            self._assign(tj, observed.pool, attempts.retry)
        for name in attempts.doomed:
            self._delete_assignment(name)
        status = compute_pooled_status(tj, attempts, now=now, expected_outputs=observed.outputs)
        self._write_status(tj, status)
        if attempts.next_check is not None:
            return (attempts.next_check - now).total_seconds() + LEASE_CHECK_MARGIN_SECONDS
        return self._finish(tj, status, now)

    def _finish(self, tj: dict[str, Any], status: dict[str, Any], now: datetime.datetime) -> float | None:
        """Delivers a finished job's webhook and deletes it once its TTL ran out; returns the seconds left."""
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
            waiting=observed.waiting,
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

    def _pool_job(self, tj: Mapping[str, Any], kueue_job: bool) -> pools.PoolJob:
        return pools.pool_job(tj, builders.runner_spec(tj, self.settings), kueue=kueue_job)

    # -- reads -------------------------------------------------------------------------------------

    def _read_pools(self) -> PoolObjects:
        """The RunnerPools of the operator's namespace, their Deployments, assignments and Leases."""
        namespace = self.settings.operator_namespace
        listed = {plural: self._pool_objects(plural) for plural in (POOL_PLURAL, ASSIGNMENT_PLURAL)}
        deployments = _json(
            self.apps.list_namespaced_deployment(namespace, label_selector=POOL_LABEL, _preload_content=False)
        )["items"]
        leases = _json(self.coordination.list_namespaced_lease(namespace, _preload_content=False))["items"]
        assignments: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for assignment in listed[ASSIGNMENT_PLURAL]:
            assignments[assignment["spec"]["job"]["uid"]].append(assignment)
        return PoolObjects(
            runner_pools={pool["metadata"]["name"]: pool for pool in listed[POOL_PLURAL]},
            deployments={d["metadata"]["labels"][POOL_LABEL]: d for d in deployments},
            assignments=dict(assignments),
            leases={lease["metadata"]["name"]: lease for lease in leases},
        )

    def _pool_objects(self, plural: str) -> list[dict[str, Any]]:
        """RunnerPools or RunnerAssignments; none where their CRD is not installed."""
        try:
            listing = self.custom.list_namespaced_custom_object(
                GROUP, VERSION, self.settings.operator_namespace, plural
            )
        except ApiException as error:
            if error.status == HTTPStatus.NOT_FOUND:
                return []
            raise
        items: list[dict[str, Any]] = listing["items"]
        return items

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

    def _assign(
        self, tj: dict[str, Any], pool: Mapping[str, Any], attempt: int
    ) -> tuple[dict[str, Any], policy.Refusal | None]:
        """Creates the job's assignment of `attempt` in `pool`, with presigned URLs valid from now."""
        environment = pools.assignment_environment(tj, self.settings, self.egress, self._grants(tj, model=False))
        assignment = pools.build_assignment(tj, pool, attempt, environment)

        def create(_: str, body: dict[str, Any]) -> None:
            namespace = body["metadata"]["namespace"]
            self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, ASSIGNMENT_PLURAL, body)

        return assignment, self._create(tj, [(create, assignment)])

    def _delete_assignment(self, name: str) -> None:
        try:
            self.custom.delete_namespaced_custom_object(
                GROUP, VERSION, self.settings.operator_namespace, ASSIGNMENT_PLURAL, name
            )
        except ApiException as error:
            if error.status != HTTPStatus.NOT_FOUND:
                raise

    def _delete_orphans(self, pooled: PoolObjects, live_uids: set[str]) -> None:
        """Deletes the assignments of jobs that are gone or going: their workers abandon them."""
        for uid, assignments in pooled.assignments.items():
            if uid not in live_uids:
                for assignment in assignments:
                    self._delete_assignment(assignment["metadata"]["name"])

    def _keep_pool(self, pool: dict[str, Any], deployment: dict[str, Any] | None, running: int, waiting: int) -> None:
        """Sizes the pool's workers to its jobs (running and waiting ones), rolls out what the operator builds for
        them, and writes the pool's status."""
        parsed = RunnerPool.model_validate(pool)
        status: dict[str, Any] = {}
        now = self.now()
        if pools.model_grants_due(parsed, now):
            status["modelGrants"] = self._grant_pool_model(pool, parsed, now)
        elif model_location(parsed.spec.model) is None and parsed.status and parsed.status.model_grants:
            status["modelGrants"] = None
        replicas = pools.worker_replicas(parsed, running + waiting)
        wanted = pools.build_worker_deployment(pool, self.settings, replicas)
        namespace = pool["metadata"]["namespace"]
        if deployment is None:
            try:
                self.apps.create_namespaced_deployment(namespace, wanted)
            except ApiException as error:
                if error.status != HTTPStatus.CONFLICT:
                    raise
        elif (patch := pools.deployment_patch(deployment, wanted)) is not None:
            self.apps.patch_namespaced_deployment(
                wanted["metadata"]["name"], namespace, patch, _content_type="application/merge-patch+json"
            )
        status |= pools.pool_status(
            replicas=replicas, ready=pools.ready_workers(deployment), running=running, waiting=waiting
        )
        changed = merge_patch(pool.get("status") or {}, status)
        if changed:
            self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, POOL_PLURAL, pool["metadata"]["name"], {"status": changed}
            )

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

    def _grants(self, tj: dict[str, Any], *, model: bool = True) -> StoreGrants:
        """The job's presigned URLs; with `model` false, none for an s3:// model (a pool's worker has its own)."""
        spec = builders.runner_spec(tj, self.settings)
        keys, error = self._model_keys(spec.model) if model else ([], None)
        grace = datetime.timedelta(seconds=self.settings.grant_grace_seconds)
        return grants.store_grants(spec, self._presign, self.now(), grace=grace, model_keys=keys, model_error=error)

    def _model_keys(self, model: str | None) -> tuple[list[str], str | None]:
        """The keys under an s3:// model's prefix (none for other models), or why they may not be granted."""
        location = model_location(model or "")
        if location is None:
            return [], None
        bucket, prefix = location
        try:
            listed = self.store.list_objects(bucket, prefix=prefix, recursive=True)
            items = list(itertools.islice(listed, grants.MAX_MODEL_FILES + 1))
        except S3Error as failure:
            return [], f"cannot list {model}: {failure.code}"
        size = sum(item.size or 0 for item in items)
        if size > self.settings.max_model_bytes:
            limit = self.settings.max_model_bytes
            return [], f"{model} holds {size} bytes, more than a model may hold ({limit} bytes, models.maxBytes)"
        return [item.object_name for item in items], None

    def _grant_pool_model(self, pool: Mapping[str, Any], parsed: RunnerPool, now: datetime.datetime) -> dict[str, Any]:
        """Presigns the files of the pool's s3:// model for its Secret; returns its status.modelGrants."""
        model = parsed.spec.model
        keys, error = self._model_keys(model)
        granted = grants.model_grants(model, self._presign, now, pools.MODEL_GRANTS_VALIDITY, keys=keys, error=error)
        previous = parsed.status.model_grants if parsed.status else None
        status, replace = pools.renewed_model_grants(model, now, granted, previous)
        if granted.model_error:
            log.warning("the model of pool %s cannot be granted: %s", parsed.metadata["name"], granted.model_error)
        if replace:
            self._apply_secret(pools.build_model_secret(pool, granted))
        return status

    def _apply_secret(self, secret: dict[str, Any]) -> None:
        metadata = secret["metadata"]
        try:
            self.core.create_namespaced_secret(metadata["namespace"], secret)
        except ApiException as failure:
            if failure.status != HTTPStatus.CONFLICT:
                raise
            patch = {"stringData": secret["stringData"]}
            self.core.patch_namespaced_secret(metadata["name"], metadata["namespace"], patch)

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
class PoolObjects:
    """What one pass read of the pools, in the operator's namespace."""

    runner_pools: dict[str, dict[str, Any]]
    """By name."""
    deployments: dict[str, dict[str, Any]]
    """The workers of each pool, by the pool's name."""
    assignments: dict[str, list[dict[str, Any]]]
    """By the uid of their job."""
    leases: dict[str, dict[str, Any]]
    """By name: an assignment's Lease has its name."""

    @property
    def running(self) -> Counter[str]:
        """The unfinished assignments of each pool."""
        return Counter(
            assignment["spec"]["pool"]
            for assignments in self.assignments.values()
            for assignment in assignments
            if not pools.is_finished(assignment)
        )

    def rooms(self) -> list[pools.PoolRoom]:
        running = self.running
        return [
            pools.pool_room(
                RunnerPool.model_validate(pool), pools.ready_workers(self.deployments.get(name)), running[name]
            )
            for name, pool in self.runner_pools.items()
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
    assignments: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    """The job's RunnerAssignments, when a pool runs it."""
    leases: Mapping[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    """The Leases of the pools' namespace, by name."""
    pool: Mapping[str, Any] | None = None
    """The RunnerPool that runs the job, or that it is sent to now."""
    waiting: tuple[str, str] | None = None
    """Why the job waits though the queue would admit it: no pool has room for it."""


def _attempt(assignment: Mapping[str, Any]) -> int:
    attempt: int = assignment["spec"]["attempt"]
    return attempt


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
