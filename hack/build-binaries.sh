#!/usr/bin/env bash
# Builds the pinned control-plane binaries (hack/versions.env) from their Go modules into a cache
# keyed by version, so a second run builds nothing. Prints the bin directories, one a line.
#
#   hack/build-binaries.sh            build what is missing, print the bin directories
#   hack/build-binaries.sh --path     only print the bin directories (build nothing)
set -euo pipefail

hack=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$hack/versions.env"
cache=${KUBESCRIBE_CACHE:-$HOME/.cache/kubescribe}
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
export GOPATH=${GOPATH:-$(go env GOPATH)}

k8s_dir=$cache/bin/kubernetes-$KUBERNETES_VERSION
etcd_dir=$cache/bin/etcd-$ETCD_VERSION
helm_dir=$cache/bin/helm-$HELM_VERSION
minio_dir=$cache/bin/minio-$MINIO_VERSION
kueue_dir=$cache/bin/kueue-$KUEUE_VERSION
registry_dir=$cache/bin/registry-$REGISTRY_VERSION

if [[ ${1:-} == --path ]]; then
  printf '%s\n' "$k8s_dir" "$etcd_dir" "$helm_dir" "$minio_dir" "$kueue_dir" "$registry_dir"
  exit 0
fi

# build COMPONENT DIR BINARY... -- COMMAND...: runs COMMAND (which writes the binaries into $out)
# unless DIR already holds every BINARY; on failure names the component and shows the Go error.
build() {
  local component=$1 dir=$2; shift 2
  local bins=()
  while [[ $1 != -- ]]; do bins+=("$1"); shift; done
  shift
  local missing=0 b
  for b in "${bins[@]}"; do [[ -x $dir/$b ]] || missing=1; done
  ((missing)) || return 0

  local work log
  work=$(mktemp -d "$cache/build-$component.XXXXXX")
  log=$work/build.log
  echo "building $component (${bins[*]}) into $dir; log: $log" >&2
  mkdir -p "$work/out"
  if ! (cd "$work" && out=$work/out "$@") >"$log" 2>&1; then
    echo "error: building $component failed. Last lines of $log:" >&2
    tail -n 40 "$log" >&2
    exit 1
  fi
  for b in "${bins[@]}"; do
    [[ -x $work/out/$b ]] || { echo "error: building $component produced no $b (log: $log)" >&2; exit 1; }
  done
  mkdir -p "$(dirname "$dir")"
  rm -rf "$dir"
  mv "$work/out" "$dir"
  rm -rf "$work"
}

# k8s.io/kubernetes cannot be built as a dependency as it is: its go.mod points every staging
# module (k8s.io/api, k8s.io/client-go, ...) at ./staging. The wrapper module replaces each of
# them, read from that go.mod, with its published v0.x release of the same patch.
build_kubernetes() {
  local staging_version=v0${KUBERNETES_VERSION#v1}
  local gomod
  printf 'module kubescribe.local/kubernetes-build\n\ngo 1.25.0\n\nrequire k8s.io/kubernetes %s\n' \
    "$KUBERNETES_VERSION" >go.mod
  printf 'k8s.io/kubernetes %s %s\nk8s.io/kubernetes %s/go.mod %s\n' \
    "$KUBERNETES_VERSION" "$KUBERNETES_SUM" "$KUBERNETES_VERSION" "$KUBERNETES_GOMOD_SUM" >go.sum
  gomod=$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  awk '$2 == "=>" && $3 ~ /^\.\/staging\// {print $1}' "$gomod" | while read -r module; do
    echo "replace $module => $module $staging_version" >>go.mod
  done
  local pkg=k8s.io/component-base/version cpkg=k8s.io/client-go/pkg/version minor
  minor=$(cut -d. -f2 <<<"$KUBERNETES_VERSION")
  local ldflags="-s -w"
  for p in $pkg $cpkg; do
    ldflags+=" -X $p.gitVersion=$KUBERNETES_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
    ldflags+=" -X $p.gitCommit=$KUBERNETES_COMMIT -X $p.gitTreeState=clean"
    ldflags+=" -X $p.buildDate=$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" |
      sed -n 's/.*"Time": "\(.*\)".*/\1/p' | head -n1)"
  done
  go build -trimpath -ldflags "$ldflags" -o "$out/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
}

# etcd's server module also points its sibling modules at local directories.
build_etcd() {
  printf 'module kubescribe.local/etcd-build\n\ngo 1.26.0\n\nrequire go.etcd.io/etcd/server/v3 %s\n' \
    "$ETCD_VERSION" >go.mod
  local m
  for m in go.etcd.io/etcd/api/v3 go.etcd.io/etcd/client/pkg/v3 go.etcd.io/etcd/client/v3 go.etcd.io/etcd/pkg/v3; do
    echo "replace $m => $m $ETCD_VERSION" >>go.mod
  done
  go build -trimpath -ldflags "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=$ETCD_VERSION" \
    -o "$out/etcd" go.etcd.io/etcd/server/v3
}

build_helm() {
  local major=${HELM_VERSION%%.*}
  GOBIN=$out go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/$major/internal/version.version=$HELM_VERSION -X helm.sh/helm/$major/internal/version.gitTreeState=clean" \
    "helm.sh/helm/$major/cmd/helm@$HELM_VERSION"
}

build_minio() {
  local stamp=${MINIO_VERSION#v0.0.0-} when
  when=$(date -u -d "${stamp:0:8} ${stamp:8:2}:${stamp:10:2}:${stamp:12:2}" +%Y-%m-%dT%H:%M:%SZ)
  local commit=${stamp##*-} p=github.com/minio/minio/cmd
  GOBIN=$out go install -trimpath \
    -ldflags "-s -w -X $p.Version=$when -X $p.ReleaseTag=DEVELOPMENT.${when//:/-} -X $p.CommitID=$commit -X $p.ShortCommitID=$commit" \
    "github.com/minio/minio@$MINIO_VERSION"
}

# `go install pkg@version` asks the module proxy for the module's version list, which it refuses here;
# a wrapper module requiring the version builds the same package.
build_kueue() {
  printf 'module kubescribe.local/kueue-build\n\ngo 1.26.0\n\nrequire sigs.k8s.io/kueue %s\n' "$KUEUE_VERSION" >go.mod
  local p=sigs.k8s.io/kueue/pkg/version when
  when=$(go list -m -json "sigs.k8s.io/kueue@$KUEUE_VERSION" | sed -n 's/.*"Time": "\(.*\)".*/\1/p' | head -n1)
  go build -trimpath \
    -ldflags "-s -w -X $p.GitVersion=$KUEUE_VERSION -X $p.GitCommit=$KUEUE_COMMIT -X $p.BuildDate=$when" \
    -o "$out/kueue" sigs.k8s.io/kueue/cmd/kueue
}

build_registry() {
  printf 'module kubescribe.local/registry-build\n\ngo 1.26.0\n\nrequire github.com/distribution/distribution/v3 %s\n' \
    "$REGISTRY_VERSION" >go.mod
  local p=github.com/distribution/distribution/v3/version
  go build -trimpath -ldflags "-s -w -X $p.version=$REGISTRY_VERSION" \
    -o "$out/registry" github.com/distribution/distribution/v3/cmd/registry
}

mkdir -p "$cache"
build etcd "$etcd_dir" etcd -- build_etcd
build helm "$helm_dir" helm -- build_helm
build minio "$minio_dir" minio -- build_minio
build kubernetes "$k8s_dir" kube-apiserver kube-controller-manager kube-scheduler kubectl -- build_kubernetes
build kueue "$kueue_dir" kueue -- build_kueue
build registry "$registry_dir" registry -- build_registry
printf '%s\n' "$k8s_dir" "$etcd_dir" "$helm_dir" "$minio_dir" "$kueue_dir" "$registry_dir"
