#!/usr/bin/env bash
# Pushes the images `make images` built to the local cluster's registry ($KUBESCRIBE_REGISTRY, in .local/env) and
# prints the chart values that install them by digest, `name=value` a line (for helm's --set).
# The layers go uncompressed: the registry is on loopback, and compressing a gigabyte costs more than sending it.
set -euo pipefail
cd "$(dirname "$0")/.."

registry=${KUBESCRIBE_REGISTRY:?names the registry of the local cluster: source .local/env (make up) first}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
digests=$(mktemp -d)
trap 'rm -rf "$digests"' EXIT

for image in kubescribe kubescribe-runner; do
  if ! buildah inspect --type image "localhost/$image:$version" >/dev/null 2>&1; then
    echo "error: no image localhost/$image:$version; build it with make images" >&2
    exit 1
  fi
  buildah push --quiet --tls-verify=false --disable-compression --digestfile "$digests/$image" \
    "localhost/$image:$version" "docker://$registry/$image:$version" >&2
done

echo "image.repository=$registry/kubescribe"
echo "image.digest=$(cat "$digests/kubescribe")"
echo "runner.image.repository=$registry/kubescribe-runner"
echo "runner.image.digest=$(cat "$digests/kubescribe-runner")"
