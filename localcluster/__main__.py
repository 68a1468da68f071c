"""`python -m localcluster up|down|status|logs` — the local cluster from the command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from localcluster.cluster import ClusterError, LocalCluster


def _pod_logs(root: Path, pod: str, container: str | None) -> int:
    namespace, _, name = pod.rpartition("/")
    namespace = namespace or "default"
    directories = sorted(root.glob(f"nodes/*/pods/{namespace}_{name}_*"), key=lambda p: p.stat().st_mtime)
    if not directories:
        print(f"no logs for pod {namespace}/{name} under {root / 'nodes'}", file=sys.stderr)
        return 1
    containers = sorted((directories[-1] / "logs").glob(container or "*"))
    if not containers:
        print(f"pod {namespace}/{name} has no container {container!r}", file=sys.stderr)
        return 1
    for directory in containers:
        if len(containers) > 1:
            print(f"==> {directory.name} <==")
        for path in sorted(directory.glob("*.log"), key=lambda path: int(path.stem)):
            sys.stdout.write(path.read_text(errors="replace"))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localcluster", description=__doc__)
    parser.add_argument("--root", type=Path, default=Path(".local"), help="state directory (default .local)")
    parser.add_argument("--bin-path", default="", help="directories of the pinned binaries, ':'-separated")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("up", help="start the cluster (does nothing when it is up)")
    commands.add_parser("down", help="stop every process of the cluster")
    commands.add_parser("clean", help="stop the cluster and delete its state")
    commands.add_parser("status", help="say whether the cluster is up")
    logs = commands.add_parser("logs", help="print a pod's container logs")
    logs.add_argument("pod", help="NAMESPACE/NAME")
    logs.add_argument("container", nargs="?")
    args = parser.parse_args(argv)

    cluster = LocalCluster(args.root, [Path(p) for p in args.bin_path.split(":") if p])
    if args.command == "up":
        try:
            started = cluster.up()
        except ClusterError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        state = cluster.load_state()
        assert state is not None
        print(("started" if started else "already up") + f": the local cluster at {cluster.api_url(state)}")
        print(f"  components: {', '.join(state.pids)}")
        print(f"  MinIO (S3) at {cluster.s3_url(state)}")
        print(f"  to use it: source {cluster.env_file}")
    elif args.command == "down":
        cluster.down()
        print("the local cluster is stopped")
    elif args.command == "clean":
        cluster.wipe()
        print(f"the local cluster is stopped and {cluster.root} deleted")
    elif args.command == "status":
        state = cluster.load_state()
        running = state is not None and cluster.is_running(state)
        print("up" if running else "down")
        return 0 if running else 3
    else:
        return _pod_logs(cluster.root, args.pod, args.container)
    return 0


if __name__ == "__main__":
    sys.exit(main())
