"""`python -m bench.chaos` (`make chaos`): bring up a local cluster of its own, install the chart, run each fault
scenario against real jobs, stop the cluster, and write bench-results/chaos.md and chaos.json."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from minio import Minio

from bench import kube
from bench.chaos import report, scenarios
from bench.chaos.faults import OPERATOR_NAMESPACE, Faults
from bench.gateway import audio_file
from localcluster.cluster import NODES, LocalCluster

RESULTS = kube.REPO / "bench-results"
HELM_VALUES = {
    "operator.maxRunningJobs": "4",
    "operator.maxGpusPerNamespace": "4",
    "operator.resyncSeconds": "10",
    **{f"{part}.nodeSelector.kubernetes\\.io/hostname": NODES[1] for part in ("operator", "gateway")},
    "gateway.concurrency.uploads": "200",
    "gateway.rateLimit.perSecond": "1000",
    "gateway.rateLimit.burst": "1000",
    "gateway.maxQueuedJobsPerNamespace": "2000",
    "gateway.abandonedUploadSeconds": "60",
}
"""Four runners at once: what two cores transcribe without starving the control plane. The operator and the
gateway run on the node that does not fail: the node scenario is about runners (an operator on a failed node is
replaced after Kubernetes' default 300 s toleration, as any Deployment's pod)."""

SCENARIOS: dict[str, tuple[str, Callable[[scenarios.Lab, int], dict[str, Any]], int]] = {
    "operator": ("1. The operator SIGKILLed and its pod deleted", scenarios.operator_killed, 100),
    "runners": ("2. Runners killed and deleted, a node failed", scenarios.runners_killed, 30),
    "store": ("3. MinIO stopped for 30 s while jobs run and uploads stream in", scenarios.store_stopped, 30),
    "apiserver": ("4. kube-apiserver and etcd crashed and restarted", scenarios.control_plane_restarted, 40),
    "gateway": ("5. The gateway SIGKILLed during concurrent uploads", scenarios.gateway_killed, 20),
    "load": ("6. Load: many jobs at once through kubectl", scenarios.load, 1000),
}

UPLOAD_BYTES = 20 << 20
"""Three parts of the gateway's multipart upload."""

log = logging.getLogger("bench.chaos")


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated (default: all)")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiplies every scenario's number of jobs (default 1)"
    )
    parser.add_argument(
        "--jobs", action="append", default=[], metavar="SCENARIO=N", help="a scenario's number of jobs (repeatable)"
    )
    parser.add_argument("--seed", type=int, default=1, help="of the random moments of the faults")
    return parser.parse_args()


def keep_logs(root: Path, kept: Path) -> None:
    """The logs of the cluster's components and of the operator's and gateway's pods, for reading after the run."""
    shutil.rmtree(kept, ignore_errors=True)
    shutil.copytree(root / "logs", kept / "cluster")
    for logs in root.glob(f"nodes/*/pods/{OPERATOR_NAMESPACE}_*/logs"):
        shutil.copytree(logs, kept / "pods" / logs.parent.name)


def speech(path: Path) -> Path:
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(path), scenarios.SPEECH], check=True)
    return path


def main() -> None:
    # Stopped by a signal, the run still stops its cluster (a shell's background job ignores SIGINT otherwise).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(f"stopped by signal {signal.SIGTERM}"))
    args = arguments()
    counts = {name: int(n) for name, _, n in (item.partition("=") for item in args.jobs)}
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for chatty in ("kubernetes", "httpx"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    results: dict[str, Any] = {
        "header": report.header(),
        "commit": report.commit(),
        "ttl_seconds": scenarios.TTL_SECONDS,
        "scale": args.scale,
        "scenarios": {},
    }
    with tempfile.TemporaryDirectory(prefix="kubescribe-chaos-") as temp:
        work = Path(temp)
        cluster = LocalCluster(work / "cluster", kube.bin_path())
        log.info("starting a local cluster under %s", cluster.root)
        cluster.up()
        try:
            state = cluster.load_state()
            assert state is not None
            env = {**os.environ, **cluster.env_exports(state)}
            s3 = Minio(
                cluster.s3_url(state).removeprefix("http://"), state.minio_user, state.minio_password, secure=False
            )
            for bucket in (scenarios.AUDIO_BUCKET, scenarios.OUTPUTS_BUCKET):
                s3.make_bucket(bucket)
            values = kube.install_operator(cluster, state, env, HELM_VALUES)
            api = kube.api_client(cluster.admin_kubeconfig)
            lab = scenarios.Lab(
                cluster,
                state,
                api,
                s3,
                Faults(cluster, api, args.seed),
                env,
                speech(work / "s.wav"),
                gateway_url=f"http://127.0.0.1:{values['gateway.port']}",
                upload=audio_file(work / "upload.wav", UPLOAD_BYTES),
            )
            for name in args.scenarios.split(","):
                title, run, jobs = SCENARIOS[name]
                count = counts.get(name) or max(1, round(jobs * args.scale))
                log.info("scenario %s: %d jobs", name, count)
                try:
                    outcome = run(lab, count)
                except Exception as error:
                    log.error("scenario %s did not complete:\n%s", name, traceback.format_exc())
                    outcome = {"error": f"{type(error).__name__}: {error}"}
                results["scenarios"][name] = (title, outcome)
                report.write(RESULTS, results)
        finally:
            log.info("stopping the local cluster")
            cluster.down()
            keep_logs(cluster.root, RESULTS / "chaos-logs")
    print(report.write(RESULTS, results).read_text())


if __name__ == "__main__":
    main()
