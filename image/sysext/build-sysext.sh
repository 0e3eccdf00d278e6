#!/bin/sh
# Build a systemd-sysext image of kubeboot, without root and without mounts.
#   image/sysext/build-sysext.sh OUT.raw [BINARY]
# OUT's file name (less .raw) is the extension's name; the default
# kubeboot.raw goes to /var/lib/extensions/ (or /etc/extensions/) on the
# node, where systemd-sysext.service merges it into /usr at boot.
#
# Layout (the same /usr-only layout as `install-into-root.sh --usr`, plus):
#   usr/lib/extension-release.d/extension-release.NAME   ID=_any: any distribution
#   usr/lib/systemd/system/multi-user.target.wants/kubeboot.service -> ../kubeboot.service
# The wants link enables the unit from /usr itself: presets are applied on
# the first boot before systemd-sysext has merged anything, so a unit that
# arrives in a sysext is never preset-enabled. The binary is static, so
# ID=_any is honest: it needs nothing from the host's /usr.
#
# Filesystem: EROFS (mkfs.erofs, Debian erofs-utils); KUBEBOOT_SYSEXT_FS=squashfs
# uses mksquashfs (squashfs-tools) instead. Both write the image from a
# directory tree, as an ordinary user, with files owned by root.
set -eu
out=${1:?usage: build-sysext.sh OUT.raw [BINARY]}
here=$(cd "$(dirname "$0")/../.." && pwd)
bin=${2:-$here/target/x86_64-unknown-linux-musl/release/kubeboot}
name=$(basename "$out" .raw)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
"$here/image/install-into-root.sh" --usr "$stage" "$bin" >/dev/null
mkdir -p "$stage/usr/lib/systemd/system/multi-user.target.wants"
ln -s ../kubeboot.service "$stage/usr/lib/systemd/system/multi-user.target.wants/kubeboot.service"
mkdir -p "$stage/usr/lib/extension-release.d"
printf 'ID=_any\nARCHITECTURE=x86-64\n' > "$stage/usr/lib/extension-release.d/extension-release.$name"
chmod 0644 "$stage/usr/lib/extension-release.d/extension-release.$name"
rm -f "$out"
case "${KUBEBOOT_SYSEXT_FS:-erofs}" in
erofs) mkfs.erofs --all-root -T0 "$out" "$stage" >/dev/null ;;
squashfs) mksquashfs "$stage" "$out" -all-root -noappend -quiet >/dev/null ;;
*) echo "KUBEBOOT_SYSEXT_FS: erofs or squashfs" >&2; exit 2 ;;
esac
echo "built $out (${KUBEBOOT_SYSEXT_FS:-erofs})"
