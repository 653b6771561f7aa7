#!/usr/bin/env bash
# Offline checks of the deployment files: the Kubernetes manifests against the API schemas
# (kubernetes-validate ships them) and the systemd units with systemd-analyze. Run from the
# repository root after building the binaries (the units are checked against them).
set -euo pipefail
bin_dir=${1:-target/debug}
if [ ! -x "$bin_dir/wardctl" ] || [ ! -x "$bin_dir/ward-agent" ]; then
  echo "error: no built wardctl/ward-agent in $bin_dir: run cargo build --bins first, or pass the directory" >&2
  exit 2
fi

if ! command -v kubernetes-validate >/dev/null 2>&1; then
  python3 -m pip install --quiet kubernetes-validate
fi
kubernetes-validate --strict deploy/kubernetes/*.yaml

if ! command -v systemd-analyze >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq systemd
fi
units=$(mktemp -d)
trap 'rm -rf "$units"' EXIT
for unit in deploy/systemd/*.service; do
  # The units name the installed paths; check them against the binaries just built.
  sed "s#/usr/local/bin/#$(realpath "$bin_dir")/#g" "$unit" >"$units/$(basename "$unit")"
done
systemd-analyze verify "$units"/*.service
echo "deployment files: ok"
