"""`python -m bench` (`make bench`): bring up a local cluster of its own, measure the runner's overhead, the
operator's admission latency, the gateway, the latency of its synchronous transcriptions, many short jobs in
runner pods and in a pool and a shared model through the node's model cache, stop the cluster, measure diarization,
compare beam sizes (in this process) and a warm model against a process per job (on the GPU where there is one),
and write bench-results/report.md and report.json."""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from minio import Minio

from bench import (
    admission,
    beam,
    diarization,
    gateway,
    kube,
    latency,
    modelcache,
    overhead,
    report,
    shortjobs,
    warmmodel,
)
from bench.speech import synthesise
from kubescribe.runner.transcribe import CPU_BATCH_SIZE
from localcluster.cluster import ClusterState, LocalCluster

RESULTS = kube.REPO / "bench-results"
BASELINE_NAMESPACE = "bench-baseline"
JOBS_NAMESPACE = "bench-jobs"
PARTS = (
    "overhead",
    "admission",
    "gateway",
    "latency",
    "shortjobs",
    "modelcache",
    "diarization",
    "beam",
    "warmmodel",
)
CLUSTER_PARTS = {"overhead", "admission", "gateway", "latency", "shortjobs", "modelcache"}
"""The parts measured on a local cluster; diarization needs none."""

log = logging.getLogger("bench")


def measure_overhead(cluster: LocalCluster, state: ClusterState, work: Path) -> dict[str, Any]:
    sample = work / "speech.wav"
    duration = synthesise(sample)
    log.info("runner overhead: %.1f s of speech, %d rounds of each side", duration, overhead.ROUNDS)
    s3 = Minio(cluster.s3_url(state).removeprefix("http://"), state.minio_user, state.minio_password, secure=False)
    result = overhead.measure(sample, duration, cluster.env_exports(state), s3).summary()
    return {**result, "batch_size": CPU_BATCH_SIZE}


def measure_admission(cluster: LocalCluster, state: ClusterState) -> dict[str, Any]:
    env = {**os.environ, **cluster.env_exports(state)}
    helm_values = kube.install_operator(cluster, state, env)
    api = kube.api_client(cluster.admin_kubeconfig)
    spec = admission.job_spec(overhead.BUCKET, overhead.OUTPUT_BUCKET, JOBS_NAMESPACE)
    s3_env = {k: v for k, v in cluster.env_exports(state).items() if k.startswith("AWS_")}

    kube.create_namespace(api, BASELINE_NAMESPACE)
    log.info("admission: %d plain Jobs (baseline)", admission.JOBS)
    baseline = admission.plain_jobs(api, BASELINE_NAMESPACE, spec, s3_env)
    baseline_gone = kube.delete_namespace(api, BASELINE_NAMESPACE)

    kube.create_namespace(api, JOBS_NAMESPACE)
    log.info("admission: %d TranscriptionJobs", admission.JOBS)
    jobs = admission.transcription_jobs(api, JOBS_NAMESPACE, spec)
    remaining = admission.delete_transcription_jobs(api, JOBS_NAMESPACE)
    jobs_gone = kube.delete_namespace(api, JOBS_NAMESPACE)
    cleanup = (
        f"baseline Jobs deleted ({'pods gone' if baseline_gone else 'pods still going'}); "
        f"TranscriptionJobs deleted ({remaining} left after the operator's finalizer, "
        f"{'pods gone' if jobs_gone else 'pods still going'}); the cluster was stopped afterwards."
    )
    return {
        "baseline": baseline.summary(),
        "operator": jobs.summary(),
        "helm_values": helm_values,
        "create_threads": admission.CREATE_THREADS,
        "cleanup": cleanup,
    }


def measure_gateway(cluster: LocalCluster, state: ClusterState, work: Path, upload_mib: int) -> dict[str, Any]:
    log.info("gateway: %d MiB uploads, %d rounds of each side; then job lookups", upload_mib, gateway.ROUNDS)
    return gateway.measure(cluster, state, work, upload_mib << 20)


def measure_latency(cluster: LocalCluster, state: ClusterState, work: Path) -> dict[str, Any]:
    log.info("latency: /v1/audio/transcriptions against bare faster-whisper, %d rounds of each side", latency.ROUNDS)
    return latency.measure(cluster, state, work).summary()


def measure_short_jobs(cluster: LocalCluster, state: ClusterState, work: Path) -> dict[str, Any]:
    log.info(
        "short jobs: %d in runner pods, then %d in a pool, %d at once",
        shortjobs.JOBS,
        shortjobs.JOBS,
        shortjobs.RUNNING,
    )
    return shortjobs.measure(cluster, state, work)


def measure_model_cache(cluster: LocalCluster, state: ClusterState, work: Path) -> dict[str, Any]:
    log.info("model cache: %d fetches of the base model from the store, then through the cache", modelcache.JOBS)
    return modelcache.measure(cluster, state, work)


def measure_diarization(work: Path) -> dict[str, Any]:
    log.info("diarization: %d conversations, %d rounds each", len(diarization.CONVERSATIONS), diarization.ROUNDS)
    return diarization.measure(work)


def measure_beam(work: Path) -> dict[str, Any]:
    sample = work / "beam.wav"
    duration = synthesise(sample)
    log.info("beam size: %.1f s of speech, %d rounds of beam 5 and beam 1", duration, beam.ROUNDS)
    return beam.measure(sample, duration).summary()


def measure_warm_model(work: Path) -> dict[str, Any]:
    plan = warmmodel.Plan.for_this_machine(cores=len(os.sched_getaffinity(0)))
    log.info("warm model: %d jobs of %.0f s of %s, in a process each and in one", plan.jobs, plan.seconds, plan.model)
    return warmmodel.measure(work, plan)


def attempt(results: dict[str, Any], name: str, measure: Callable[[], dict[str, Any]]) -> None:
    """Record a part's figures, or why it could not be measured, so that one failure keeps the other."""
    try:
        results[name] = measure()
    except Exception as error:
        log.error("%s was not measured:\n%s", name, traceback.format_exc())
        results[f"{name}_error"] = f"{type(error).__name__}: {error}"


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--upload-mib", type=int, default=1024, help="size of the gateway's upload (default 1024)")
    parser.add_argument(
        "--parts",
        default=",".join(PARTS),
        help=f"comma-separated parts to measure (default: {','.join(PARTS)})",
    )
    return parser.parse_args()


def measure_on_a_cluster(results: dict[str, Any], parts: set[str], work: Path, upload_mib: int) -> None:
    cluster = LocalCluster(work / "cluster", kube.bin_path())
    log.info("starting a local cluster under %s", cluster.root)
    cluster.up()
    try:
        state = cluster.load_state()
        assert state is not None
        results["load"]["before part 1"] = report.load()
        if "overhead" in parts:
            attempt(results, "overhead", lambda: measure_overhead(cluster, state, work))
        results["load"]["after part 1"] = report.load()
        if "admission" in parts:
            attempt(results, "admission", lambda: measure_admission(cluster, state))
        results["load"]["after part 2"] = report.load()
        if "gateway" in parts:
            attempt(results, "gateway", lambda: measure_gateway(cluster, state, work, upload_mib))
        results["load"]["after part 3"] = report.load()
        if "latency" in parts:
            attempt(results, "latency", lambda: measure_latency(cluster, state, work))
        results["load"]["after part 4"] = report.load()
        if "shortjobs" in parts:
            attempt(results, "shortjobs", lambda: measure_short_jobs(cluster, state, work))
        results["load"]["after part 5"] = report.load()
        if "modelcache" in parts:
            attempt(results, "modelcache", lambda: measure_model_cache(cluster, state, work))
    finally:
        log.info("stopping the local cluster")
        cluster.down()


def main() -> None:
    args = arguments()
    parts = set(args.parts.split(","))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("faster_whisper").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    results: dict[str, Any] = {"header": report.header(), "load": {"start": report.load()}}
    with tempfile.TemporaryDirectory(prefix="kubescribe-bench-") as temp:
        work = Path(temp)
        if parts & CLUSTER_PARTS:
            measure_on_a_cluster(results, parts, work, args.upload_mib)
        results["load"]["after part 6"] = report.load()
        if "diarization" in parts:
            attempt(results, "diarization", lambda: measure_diarization(work))
        results["load"]["after part 7"] = report.load()
        if "beam" in parts:
            attempt(results, "beam", lambda: measure_beam(work))
        results["load"]["after part 8"] = report.load()
        if "warmmodel" in parts:
            attempt(results, "warmmodel", lambda: measure_warm_model(work))
    results["load"]["end"] = report.load()
    path = report.write(RESULTS, results)
    print(path.read_text())


if __name__ == "__main__":
    main()
