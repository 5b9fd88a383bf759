#!/usr/bin/env bash
# Build (once) the programs a real-cluster test runs, from the Go module proxy,
# and cache them by version. Prints one line per program: NAME VERSION PATH.
#   usage: build-components.sh [-d CACHE_DIR] TARGET...   (CACHE_DIR default $WEFT_KUBE_CACHE, else $HOME/.cache/weft-kube)
#   targets:
#     kubernetes   kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy
#                  kubectl, of KUBE_VERSION, in one go build (one module, shared compile)
#     agnhost      k8s.io/kubernetes/test/images/agnhost of KUBE_VERSION (static); its
#                  version is the module's test/images/agnhost/VERSION
#     pause        no program: prints the pause image version kubeadm of KUBE_VERSION uses
#     coredns      CoreDNS (static) at the version kubeadm of KUBE_VERSION deploys
#     etcd         etcd ETCD_VERSION
#     kube-router  kube-router KUBE_ROUTER_VERSION
#   env: KUBE_VERSION=1.37.2 ETCD_VERSION=3.7.0 KUBE_ROUTER_VERSION=2.1.0
# Builds run under `nice -n 19`, hold a lock on CACHE_DIR/.build.lock (parallel callers
# wait, then find the cache) and rename finished programs into place. Kubernetes names
# its cached programs as ../shared/tools/kube-apiserver-for-tests.sh does, so a cache
# either filled is used by both.
set -euo pipefail
dir=${WEFT_KUBE_CACHE:-$HOME/.cache/weft-kube}
if [ "${1:-}" = -d ]; then dir=$2; shift 2; fi
[ $# -gt 0 ] || { sed -n '2,14s/^# \{0,1\}//p' "$0" >&2; exit 2; }
kv=${KUBE_VERSION:-1.37.2}
ev=${ETCD_VERSION:-3.7.0}
rv=${KUBE_ROUTER_VERSION:-2.1.0}
export GOWORK=off GOFLAGS=-mod=mod
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
exec 9>"$dir/.build.lock"
flock 9

# module PATH@VERSION MODULE_FILE_BODY: a throwaway module in a new directory
# (printed) under $dir that requires PATH@VERSION, for `go build` of its packages.
module() {
  local w
  w=$(mktemp -d "$dir/build.XXXXXX")
  printf 'module weftcomponents\n\n%s\n' "$2" > "$w/go.mod"
  (cd "$w" && go get "$1" >&2) || { rm -rf "$w"; return 1; }
  echo "$w"
}

# build DIR ENV LDFLAGS PACKAGE... : go build the packages in module DIR into DIR/out/.
build() {
  local w=$1 env=$2 ldflags=$3
  shift 3
  (cd "$w" && env $env nice -n 19 go build -trimpath -ldflags "$ldflags" -o out/ "$@" >&2)
}

# gomod PATH@VERSION: the go.mod file of that module version, downloaded.
gomod() {
  (cd "$dir" && go mod download -json "$1" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')
}

# kube FILE: FILE of k8s.io/kubernetes at KUBE_VERSION, downloaded.
kube() {
  local src
  src=$(cd "$dir" && go mod download -json "k8s.io/kubernetes@v$kv" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')
  cat "$src/$1"
}

# kconst NAME FILE: the value of the Go string constant NAME in FILE of k8s.io/kubernetes.
kconst() {
  kube "$2" | sed -n 's/^[[:space:]]*'"$1"' *= *"\(.*\)".*/\1/p' | head -1
}

# kubernetes_module: a throwaway module requiring k8s.io/kubernetes@v$kv. That module
# requires every staging repo at v0.0.0 and replaces it with ./staging/...; a dependent
# module must pin each one to v0.<minor>.<patch>.
kubernetes_module() {
  local kmod replaces
  kmod=$(gomod "k8s.io/kubernetes@v$kv")
  replaces=$(awk -v v="v0.${kv#1.}" '/^require \(/{r=1;next} r&&/^\)/{r=0}
    r && $1 ~ /^k8s\.io\// && $2=="v0.0.0" {print "\t" $1 " => " $1 " " v}' "$kmod")
  module "k8s.io/kubernetes@v$kv" "$(printf 'go %s\n\nreplace (\n%s\n)' "$(sed -n 's/^go //p' "$kmod")" "$replaces")"
}

# kube_ldflags: the version stamps Kubernetes' release builds set (hack/lib/version.sh);
# kubelet and kubectl report them and the API server checks version skew with them.
kube_ldflags() {
  local minor=${kv#1.} f p
  minor=${minor%%.*}
  f="-s -w"
  for p in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
    f="$f -X $p.gitVersion=v$kv -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  done
  echo "$f"
}

# place DIR/out/NAME DEST: move a built program into the cache.
place() {
  mv -f "$1" "$2.tmp$$" && mv -f "$2.tmp$$" "$2"
}

kubernetes() {
  local missing=() p w
  for p in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl; do
    [ -x "$dir/$p-v$kv" ] || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    w=$(kubernetes_module)
    # The host's default CGO_ENABLED, as kube-apiserver-for-tests.sh builds: a warm
    # Go build cache from either serves both.
    build "$w" "" "$(kube_ldflags)" "${missing[@]/#/k8s.io/kubernetes/cmd/}" || { rm -rf "$w"; exit 1; }
    for p in "${missing[@]}"; do place "$w/out/$p" "$dir/$p-v$kv"; done
    rm -rf "$w"
  fi
  for p in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl; do
    echo "$p v$kv $dir/$p-v$kv"
  done
}

agnhost() {
  local v w
  v=$(kube test/images/agnhost/VERSION)
  if [ ! -x "$dir/agnhost-$v" ]; then
    w=$(kubernetes_module)
    build "$w" CGO_ENABLED=0 "-s -w -X main.Version=$v" k8s.io/kubernetes/test/images/agnhost ||
      { rm -rf "$w"; exit 1; }
    place "$w/out/agnhost" "$dir/agnhost-$v"
    rm -rf "$w"
  fi
  echo "agnhost $v $dir/agnhost-$v"
}

pause() {
  echo "pause $(kconst PauseVersion cmd/kubeadm/app/constants/constants.go) -"
}

# gobuild NAME MODULE VERSION PACKAGE ENV LDFLAGS: build PACKAGE of MODULE@VERSION once,
# cached as NAME-VERSION, in a module of the running Go's language version.
gobuild() {
  local name=$1 mod=$2 v=$3 pkg=$4 env=$5 ldflags=$6 w
  if [ ! -x "$dir/$name-$v" ]; then
    w=$(module "$mod@$v" "go $(go env GOVERSION | sed 's/^go//')")
    build "$w" "$env" "$ldflags" "$pkg" || { rm -rf "$w"; exit 1; }
    # The one program built, whatever go build named it (a package path
    # ending in a major version, like etcd's .../server/v3, is named after
    # the element before it).
    set -- "$w"/out/*
    place "$1" "$dir/$name-$v"
    rm -rf "$w"
  fi
  echo "$name $v $dir/$name-$v"
}

coredns() {
  local v
  v=$(kconst CoreDNSVersion cmd/kubeadm/app/constants/constants.go)
  [ -n "$v" ] || { echo "no CoreDNSVersion in kubeadm $kv" >&2; exit 1; }
  gobuild coredns github.com/coredns/coredns "$v" github.com/coredns/coredns CGO_ENABLED=0 "-s -w"
}

etcd() {
  gobuild etcd go.etcd.io/etcd/server/v3 "v$ev" go.etcd.io/etcd/server/v3 "" "-s -w"
}

kube-router() {
  local p=github.com/cloudnativelabs/kube-router/v2
  gobuild kube-router "$p" "v$rv" "$p/cmd/kube-router" "" "-s -w -X $p/pkg/version.Version=v$rv"
}

for t in "$@"; do
  case $t in
  kubernetes | agnhost | pause | coredns | etcd | kube-router) "$t" ;;
  *) echo "build-components.sh: unknown target $t" >&2; exit 2 ;;
  esac
done
