#!/bin/sh
# Make the bootable test disk for tests/vm_boot.rs from the cached base tree:
#   image/vm/prepare-image.sh BASE BINARY USER_DATA WORK
# copies BASE to WORK/root, installs kubeboot with image/install-into-root.sh,
# adds the kubelet stand-in, the report/power-off unit and the NoCloud seed,
# and writes WORK/disk.img (ext4, made with `mkfs.ext4 -d`, no loop mounts),
# WORK/vmlinuz and WORK/initrd.img. WORK/root is removed afterwards.
set -eu
base=${1:?usage: prepare-image.sh BASE BINARY USER_DATA WORK}
bin=${2:?binary}
userdata=${3:?user-data}
work=${4:?work dir}
here=$(cd "$(dirname "$0")" && pwd)
files=$here/files

rm -rf "$work"
mkdir -p "$work"
root=$work/root
cp -a "$base" "$root"

"$here/../install-into-root.sh" "$root" "$bin"

# The stand-in kubelet: installed, not enabled (kubeboot enables and starts it).
install -D -m 0644 "$files/kubelet.service" "$root/etc/systemd/system/kubelet.service"

# The report/power-off unit.
install -D -m 0755 "$files/kubeboot-vm-report" "$root/usr/local/sbin/kubeboot-vm-report"
install -D -m 0644 "$files/kubeboot-vm-report.service" \
    "$root/etc/systemd/system/kubeboot-vm-report.service"
ln -sf ../kubeboot-vm-report.service \
    "$root/etc/systemd/system/multi-user.target.wants/kubeboot-vm-report.service"

# The userdata: in the NoCloud seed directory, or (SEED=cidata) on a
# separate iso9660 disk labelled cidata, as cloud providers attach it.
if [ "${SEED:-dir}" = cidata ]; then
    mkdir -p "$work/cidata"
    cp "$userdata" "$work/cidata/user-data"
    printf 'instance-id: kubeboot-vm\nlocal-hostname: vmtest\n' > "$work/cidata/meta-data"
    genisoimage -quiet -output "$work/cidata.iso" -volid cidata -joliet -rock \
        "$work/cidata/user-data" "$work/cidata/meta-data"
    rm -rf "$work/cidata"
else
    install -D -m 0600 "$userdata" "$root/var/lib/cloud/seed/nocloud/user-data"
fi

# The kernel and initramfs, booted directly by QEMU (-kernel/-initrd).
set -- "$root"/boot/vmlinuz-*
[ -f "$1" ] || { echo "prepare-image.sh: no kernel in $base/boot" >&2; exit 1; }
cp "$1" "$work/vmlinuz"
set -- "$root"/boot/initrd.img-*
[ -f "$1" ] || { echo "prepare-image.sh: no initramfs in $base/boot" >&2; exit 1; }
cp "$1" "$work/initrd.img"

mkfs.ext4 -q -F -L kubeboot-vm -d "$root" "$work/disk.img" 2G
rm -rf "$root"
echo "prepared $work/disk.img"
