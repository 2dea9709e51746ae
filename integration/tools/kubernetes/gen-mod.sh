#!/usr/bin/env bash
# Writes go.mod for the test cluster's binaries. k8s.io/kubernetes replaces its
# k8s.io/* staging modules with ./staging paths that only exist in its own
# repository; outside it they must point at the published v0.<minor>.<patch>
# tags. Bumping the cluster is: edit KUBE_VERSION (and the others), run this.
set -euo pipefail
cd "$(dirname "$0")"
KUBE_VERSION=${KUBE_VERSION:-v1.37.2}
KWOK_VERSION=${KWOK_VERSION:-v0.8.0}
ETCD_VERSION=${ETCD_VERSION:-v3.7.0}
staging_version="v0.${KUBE_VERSION#v1.}"

upstream=$(GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
{
  echo "module github.com/tapline/tapline/integration/tools/kubernetes"
  echo
  echo "go $(sed -n 's/^go //p' "$upstream")"
  echo
  echo "replace ("
  awk '/^replace \(/{on=1; next} on && /^\)/{on=0} on && $2=="=>" {print $1}' "$upstream" |
    while read -r mod; do printf '\t%s => %s %s\n' "$mod" "$mod" "$staging_version"; done
  echo ")"
} > go.mod
rm -f go.sum
go get "k8s.io/kubernetes@$KUBE_VERSION" "go.etcd.io/etcd/server/v3@$ETCD_VERSION" "sigs.k8s.io/kwok@$KWOK_VERSION"
go get -tool k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl go.etcd.io/etcd/server/v3 sigs.k8s.io/kwok/cmd/kwok
go mod tidy
