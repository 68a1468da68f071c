"""The local node agent: a kubelet stand-in that runs the containers of the pods bound to its node as
local processes (these machines have no container runtime).

It registers a Node with GPU capacity, watches the pods the scheduler binds to that node (and only
those), and for each pod runs the init containers in order and then the containers, with the
container's command and args (the image is taken to be this project's), its environment resolved as
a kubelet would, a directory of its own, and a kubeconfig carrying a token of the pod's
ServiceAccount. It reports status as a kubelet does and honours restartPolicy,
activeDeadlineSeconds and graceful deletion. Container output goes to log files under the node's
state directory (`python -m localcluster logs NAMESPACE/POD` shows them).

- `node`: the node's side of the kubelet API: the Node, its lease and status, the watch of its pods,
  and the calls its pods make (pod status, events, ServiceAccount tokens, Secrets and ConfigMaps);
- `pod`: one pod's lifecycle, from its init containers to its end or deletion, and its status;
- `container`: one container's process: start, exit, termination message, restart back-off;
- `probes`: a container's startup, liveness and readiness probes, each on a thread of its own;
- `environment`: what a container is given: directories, volumes, variables and a kubeconfig.
- `images`: the node's images, pulled from their registries (`distribution`) with the pod's pull secrets,
  each unpacked (`layers`) into a root filesystem kept by manifest digest.

`python -m localcluster.nodeagent --node NAME --kubeconfig PATH --state-dir DIR` serves one node."""
