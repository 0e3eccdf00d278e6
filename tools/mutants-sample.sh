#!/bin/bash
# A systematic sample of cargo-mutants over the files that had no full run
# (docs/testing.md, "A sample over the files not run in full"):
#
#     tools/mutants-sample.sh K N OUTDIR [NAME]
#
# runs shard K/N, round-robin (mutant i of a file when i % N == K, in
# cargo-mutants' --list order), of each file below with that file's test
# selection (-C: the build and the test run are both limited to --lib and
# the named integration tests). Run it in a scratch copy of the tree
# (--in-place edits the sources), never in a work tree. NAME runs one file.
set -u
K=$1; N=$2; OUT=$3; ONLY=${4:-}
mkdir -p "$OUT"
while IFS='|' read -r name file tests; do
  [ -z "$name" ] && continue
  [ -n "$ONLY" ] && [ "$name" != "$ONLY" ] && continue
  args=()
  for t in $tests; do args+=(-C "--test=$t"); done
  o="$OUT/$name-s$K-$N"
  echo "$(date -u +%T) start $name $file shard $K/$N tests: $tests" >> "$OUT/progress.log"
  nice -n 15 cargo mutants --in-place --baseline skip --no-shuffle --timeout 300 --build-timeout 1200 \
    --shard "$K/$N" --sharding round-robin \
    --file "$file" -C --lib "${args[@]}" -o "$o" > "$o.log" 2>&1
  echo "$(date -u +%T) done $name rc=$? $(tail -1 "$o.log")" >> "$OUT/progress.log"
done <<'LIST'
addons|src/api/addons.rs|api_phases k8s_schema component_patches
etcd|src/api/etcd.rs|etcd etcdjoin_firstboot etcdjoin_concurrent etcd_reset cli_reset
kube|src/api/kube.rs|api_phases cli_tokens
objects|src/api/objects.rs|api_phases k8s_schema
tokens|src/api/tokens.rs|cli_tokens api_phases
discovery|src/api/discovery/mod.rs|cli interop_kubeadm firstboot_failures
cert|src/pki/cert.rs|pki interop_kubeadm security_settings
der|src/pki/der.rs|pki interop_kubeadm security_settings
keys|src/pki/keys.rs|pki interop_kubeadm security_settings
pkimod|src/pki/mod.rs|pki interop_kubeadm security_settings
tree|src/pki/tree.rs|pki interop_kubeadm security_settings
expiry|src/pki/expiry.rs|pki_renew cli pki
renew|src/pki/renew.rs|pki_renew cli pki etcd_renew
kubeconfig|src/pki/kubeconfig.rs|pki interop_kubeadm security_settings pki_renew
components|src/manifests/components.rs|node security_settings k8s_schema golden_tree
manifests|src/manifests/mod.rs|node security_settings k8s_schema golden_tree
preflight|src/phases/preflight.rs|node cli hardening
certs|src/api/certs.rs|interop_kubeadm cli join_late
dryrun|src/phases/dryrun.rs|cli hardening api_phases
phasesmod|src/phases/mod.rs|cli hardening api_phases crash_converge
wait|src/phases/wait.rs|cli firstboot_failures
join|src/phases/join.rs|cli firstboot_failures
LIST
