#!/usr/bin/env bash
# Installs Kubescribe (operator, gateway, the node's model cache and one runner pool) into the local cluster with its Helm chart, both the chart and the images
# `make images` built pushed to the cluster's registry first; creates a development API key once, and adds KUBESCRIBE_GATEWAY_URL and
# KUBESCRIBE_API_KEY to .local/env. Does nothing when the same chart, images and settings are installed already.
set -euo pipefail
cd "$(dirname "$0")/.."
source .local/env

# The local nodes run pods on the host's network: the operator's, the gateway's and the model cache's ports are chosen
# once.
ports=.local/kubescribe-ports
if [[ ! -s $ports || $(wc -w <"$ports") -lt 5 ]]; then
  .venv/bin/python -c 'from localcluster.cluster import free_ports; print(*free_ports(5))' >"$ports"
fi
read -r health metrics gateway gateway_metrics cache <"$ports"

settings=(
  -f localcluster/chart-values.yaml
  --set "s3.endpoint=$AWS_ENDPOINT_URL" --set "operator.ports.health=$health"
  --set "operator.ports.metrics=$metrics" --set "gateway.port=$gateway" --set "gateway.metricsPort=$gateway_metrics"
  --set "modelCache.port=$cache" --set "modelCache.url=http://127.0.0.1:$cache"
)
while read -r image; do settings+=(--set "$image"); done < <(hack/push-images.sh)
# One small runner pool for the default model, serving the development key's namespace: the demo's jobs and the
# gateway's requests from there run in its warm worker.
pool=(
  --set pools[0].name=default --set pools[0].model=tiny.en --set "pools[0].namespaces={default}"
  --set pools[0].gpu=1 --set pools[0].concurrency=2 --set pools[0].replicas.min=1 --set pools[0].replicas.max=1
)
fingerprint=$( (find charts/kubescribe localcluster/chart-values.yaml -type f -print0 | sort -z | xargs -0 sha256sum; echo "${settings[*]} ${pool[*]}") | sha256sum)
if [[ $(cat .local/kubescribe-installed 2>/dev/null) != "$fingerprint" ]]; then
  kubectl create namespace kubescribe --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  # Helm cannot own the namespace it installs into: its Pod Security label is set here.
  kubectl label namespace kubescribe pod-security.kubernetes.io/enforce=restricted --overwrite >/dev/null
  # The chart's default buckets: the gateway is ready once its upload bucket exists.
  .venv/bin/python - <<'PY'
import os
from urllib.parse import urlsplit
from minio import Minio
endpoint = urlsplit(os.environ["AWS_ENDPOINT_URL"])
s3 = Minio(endpoint.netloc, os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"], secure=False)
for bucket in ("audio", "transcripts"):
    if not s3.bucket_exists(bucket):
        s3.make_bucket(bucket)
PY
  kubectl -n kubescribe create secret generic kubescribe-s3 --dry-run=client -o yaml \
    --from-literal=AWS_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" --from-literal=AWS_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY" |
    kubectl apply -f - >/dev/null
  # --take-ownership: a cluster set up by an older chart holds a CRD that chart installed from crds/, untracked by
  # the release; the release adopts it, and from then on upgrades it.
  # The chart as a user gets it: packaged, pushed to the cluster's registry and installed from there (OCI).
  package=$(mktemp -d)
  helm package charts/kubescribe -d "$package" >/dev/null
  helm push "$package"/kubescribe-*.tgz "oci://$KUBESCRIBE_REGISTRY/charts" --plain-http >/dev/null 2>&1
  version=$(sed -n 's/^version: *//p' charts/kubescribe/Chart.yaml)
  rm -rf "$package"
  release=(kubescribe "oci://$KUBESCRIBE_REGISTRY/charts/kubescribe" --version "$version" --plain-http -n kubescribe)
  if ! kubectl get crd runnerpools.kubescribe.io >/dev/null 2>&1; then
    # Helm maps every object of a release before it creates any: the pool's CRD must exist before a pool renders.
    helm upgrade --install "${release[@]}" "${settings[@]}" --take-ownership --wait --timeout 3m >/dev/null
  fi
  helm upgrade --install "${release[@]}" "${settings[@]}" "${pool[@]}" --take-ownership --wait --timeout 3m >/dev/null
  # The operator makes the pool's workers, ready once their model is loaded.
  for _ in $(seq 1 60); do kubectl -n kubescribe get deployment default-workers >/dev/null 2>&1 && break; sleep 1; done
  kubectl -n kubescribe rollout status deployment/default-workers --timeout=3m >/dev/null
  echo "$fingerprint" >.local/kubescribe-installed
  echo "installed Kubescribe: the operator, the gateway and the runner pool default (helm release kubescribe, namespace kubescribe)"
fi

key=.local/dev-api-key
if [[ ! -s $key ]]; then
  (umask 077 && .venv/bin/kubescribe keys create --namespace default --name dev 2>/dev/null >"$key")
  echo "created the development API key for namespace default"
fi
sed -i '/^export KUBESCRIBE_GATEWAY_URL=/d; /^export KUBESCRIBE_API_KEY=/d' .local/env
printf "export KUBESCRIBE_GATEWAY_URL='http://127.0.0.1:%s'\nexport KUBESCRIBE_API_KEY='%s'\n" "$gateway" "$(cat "$key")" >>.local/env
echo "  gateway: http://127.0.0.1:$gateway (web page, /docs), metrics on http://127.0.0.1:$gateway_metrics/metrics"
echo "  KUBESCRIBE_GATEWAY_URL and KUBESCRIBE_API_KEY are in .local/env"
