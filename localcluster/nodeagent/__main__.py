"""`python -m localcluster.nodeagent`: one node of the local cluster, served until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from localcluster.nodeagent.images import ImageStore
from localcluster.nodeagent.kubeletapi import KubeletApi
from localcluster.nodeagent.node import NodeAgent
from localcluster.pki import KUBELET_CLIENT


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m localcluster.nodeagent", description=__doc__)
    parser.add_argument("--node", required=True)
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--image-store", type=Path, required=True, help="pulled images, shared by the nodes")
    parser.add_argument("--gpus", type=int, default=2)
    parser.add_argument("--kubelet-port", type=int, required=True, help="the kubelet API's port (TLS)")
    parser.add_argument("--tls-cert-file", type=Path, required=True, help="the kubelet API's serving certificate")
    parser.add_argument("--tls-private-key-file", type=Path, required=True)
    parser.add_argument("--client-ca-file", type=Path, required=True, help="the CA of the API server's client cert")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(threadName)s %(message)s")
    args.state_dir.mkdir(parents=True, exist_ok=True)
    store = ImageStore(args.image_store.resolve())
    agent = NodeAgent(
        args.node, args.kubeconfig, args.state_dir.resolve(), store, gpus=args.gpus, kubelet_port=args.kubelet_port
    )
    tls = (args.tls_cert_file, args.tls_private_key_file, args.client_ca_file)
    KubeletApi(args.kubelet_port, tls, KUBELET_CLIENT.user, agent.container_log).serve_in_background()

    def stop(signum: int, frame: object) -> None:
        agent.shutdown()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    agent.run()


if __name__ == "__main__":
    main()
