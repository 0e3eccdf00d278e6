#!/bin/sh
# Make the bootable test disk for the VM tests (tests/vm_support) from the
# cached base tree:
#   image/vm/prepare-image.sh BASE BINARY USER_DATA WORK
# copies BASE to WORK/root, installs kubeboot with image/install-into-root.sh,
# adds the kubelet stand-in, the trace and report/power-off units and the
# userdata (the NoCloud seed directory, or config disks: DISKS below; USER_DATA
# `none`: no userdata in the image), and writes WORK/disk.img (ext4, made with
# `mkfs.ext4 -d`, no loop mounts), WORK/vmlinuz and WORK/initrd.img. WORK/root
# is removed afterwards.
#
# Variants, by environment variable:
#   SYSEXT=FILE.raw     kubeboot is NOT installed into the tree: FILE.raw (made by
#                       image/sysext/build-sysext.sh) goes to
#                       /var/lib/extensions/kubeboot.raw, systemd-sysext.service is
#                       enabled, and files/kubeboot-vm-sysext-reload.service loads the
#                       merged units (systemd 252 does not reload itself after a merge).
#   KUBEBOOT_ARGS="..." a drop-in runs `kubeboot firstboot ARGS` instead of the unit's
#                       plain `kubeboot firstboot` (flags a cmdline-only config cannot set).
#   PXE=1               also writes WORK/tftp/ for QEMU's TFTP server: vmlinuz, the shipped
#                       image/pxe/worker.ipxe unchanged, and initrd.img = a small cpio
#                       naming the root disk (worker.ipxe's kernel line has no root=;
#                       files/initrd-root.conf) followed by the tree's initrd.
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

if [ -n "${SYSEXT:-}" ]; then
    # The tree gets no kubeboot at all: it arrives with the extension.
    install -D -m 0644 "$SYSEXT" "$root/var/lib/extensions/kubeboot.raw"
    mkdir -p "$root/etc/systemd/system/sysinit.target.wants"
    ln -sf /lib/systemd/system/systemd-sysext.service \
        "$root/etc/systemd/system/sysinit.target.wants/systemd-sysext.service"
    install -D -m 0644 "$files/kubeboot-vm-sysext-reload.service" \
        "$root/etc/systemd/system/kubeboot-vm-sysext-reload.service"
    ln -sf ../kubeboot-vm-sysext-reload.service \
        "$root/etc/systemd/system/sysinit.target.wants/kubeboot-vm-sysext-reload.service"
else
    "$here/../install-into-root.sh" "$root" "$bin"
fi
if [ -n "${KUBEBOOT_ARGS:-}" ]; then
    mkdir -p "$root/etc/systemd/system/kubeboot.service.d"
    printf '[Service]\nExecStart=\nExecStart=/usr/bin/kubeboot firstboot %s\n' "$KUBEBOOT_ARGS" \
        > "$root/etc/systemd/system/kubeboot.service.d/vm-test.conf"
fi

# The stand-in kubelet: installed, not enabled (kubeboot enables and starts it).
install -D -m 0644 "$files/kubelet.service" "$root/etc/systemd/system/kubelet.service"

# The report/power-off unit.
install -D -m 0755 "$files/kubeboot-vm-report" "$root/usr/local/sbin/kubeboot-vm-report"
install -D -m 0644 "$files/kubeboot-vm-report.service" \
    "$root/etc/systemd/system/kubeboot-vm-report.service"
ln -sf ../kubeboot-vm-report.service \
    "$root/etc/systemd/system/multi-user.target.wants/kubeboot-vm-report.service"

# The trace unit: kprobes on the mount(2)/umount2(2) syscalls, armed before
# kubeboot.service runs; the report prints what they caught.
install -D -m 0755 "$files/kubeboot-vm-trace" "$root/usr/local/sbin/kubeboot-vm-trace"
install -D -m 0644 "$files/kubeboot-vm-trace.service" \
    "$root/etc/systemd/system/kubeboot-vm-trace.service"
ln -sf ../kubeboot-vm-trace.service \
    "$root/etc/systemd/system/multi-user.target.wants/kubeboot-vm-trace.service"

# The userdata: in the NoCloud seed directory (default), or, with
#   DISKS="LABEL:FS:USER_DATA ..."
# on config disks made here without mounting anything, written to
# WORK/seed-1.img, WORK/seed-2.img, ... (the test attaches them in that
# order: /dev/vdb, /dev/vdc, ...). LABEL cidata/CIDATA is a NoCloud seed
# (user-data, meta-data), config-2 an OpenStack config drive
# (openstack/latest/user_data, meta_data.json); FS is iso9660 (genisoimage)
# or vfat (mkfs.vfat + mcopy). SECOND_READ=LABEL makes the report hide
# /dev/disk/by-label/LABEL after kubeboot ran and resolve the userdata once
# more with `kubeboot config show --source auto` (files/kubeboot-vm-report).
make_disk() { # LABEL FS USER_DATA OUT
    tree=$work/seed-tree
    rm -rf "$tree"
    case $1 in
    cidata | CIDATA)
        mkdir -p "$tree"
        cp "$3" "$tree/user-data"
        printf 'instance-id: kubeboot-vm\nlocal-hostname: vmtest\n' > "$tree/meta-data"
        ;;
    config-2 | CONFIG-2)
        mkdir -p "$tree/openstack/latest"
        cp "$3" "$tree/openstack/latest/user_data"
        printf '%s\n' '{"uuid": "0b5e6c1e-5d1a-4c2e-9c53-kubeboot-vm", "hostname": "vmtest", "name": "vmtest", "launch_index": 0, "availability_zone": "nova"}' \
            > "$tree/openstack/latest/meta_data.json"
        ;;
    *) echo "prepare-image.sh: unknown disk label $1" >&2; exit 2 ;;
    esac
    case $2 in
    iso9660)
        genisoimage -quiet -output "$4" -volid "$1" -joliet -rock "$tree"
        ;;
    vfat)
        # A 1 MiB FAT12 image; mkfs.fat keeps a lowercase label (and warns
        # about it), like OpenStack Nova's `mkfs.vfat -n config-2`.
        rm -f "$4"
        mkfs.vfat -C -n "$1" "$4" 1024
        MTOOLS_SKIP_CHECK=1 mcopy -s -i "$4" "$tree"/* ::/
        ;;
    *) echo "prepare-image.sh: unknown filesystem $2" >&2; exit 2 ;;
    esac
    rm -rf "$tree"
}
if [ -n "${DISKS:-}" ]; then
    n=0
    for d in $DISKS; do
        n=$((n + 1))
        label=${d%%:*}
        rest=${d#*:}
        fs=${rest%%:*}
        data=${rest#*:}
        [ "$data" != "$rest" ] || data=$userdata
        make_disk "$label" "$fs" "$data" "$work/seed-$n.img"
    done
    if [ -n "${SECOND_READ:-}" ]; then
        mkdir -p "$root/etc/kubeboot-vm"
        echo "$SECOND_READ" > "$root/etc/kubeboot-vm/second-read"
    fi
elif [ "$userdata" != none ]; then
    install -D -m 0600 "$userdata" "$root/var/lib/cloud/seed/nocloud/user-data"
fi

# The kernel and initramfs, booted directly by QEMU (-kernel/-initrd).
set -- "$root"/boot/vmlinuz-*
[ -f "$1" ] || { echo "prepare-image.sh: no kernel in $base/boot" >&2; exit 1; }
cp "$1" "$work/vmlinuz"
set -- "$root"/boot/initrd.img-*
[ -f "$1" ] || { echo "prepare-image.sh: no initramfs in $base/boot" >&2; exit 1; }
cp "$1" "$work/initrd.img"
if [ -n "${PXE:-}" ]; then
    # What a PXE server serves: the kernel, the initrd, the shipped script.
    # The initrd is one small uncompressed (newc) cpio holding
    # conf/conf.d/kubeboot-vm-root, which initramfs-tools' init sources
    # before it parses /proc/cmdline (ROOT=/dev/vda), followed by the tree's
    # own initrd: the kernel unpacks concatenated archives in order. (Put
    # first because the kernel did not find an archive appended after the
    # tree's gzip-compressed one.)
    tftp=$work/tftp
    mkdir -p "$tftp" "$work/initrd-extra/conf/conf.d"
    cp "$work/vmlinuz" "$tftp/vmlinuz"
    cp "$here/../pxe/worker.ipxe" "$tftp/worker.ipxe"
    install -m 0644 "$files/initrd-root.conf" "$work/initrd-extra/conf/conf.d/kubeboot-vm-root"
    (cd "$work/initrd-extra" && find conf | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0) \
        > "$work/initrd-extra.cpio"
    cat "$work/initrd-extra.cpio" "$work/initrd.img" > "$tftp/initrd.img"
    rm -rf "$work/initrd-extra" "$work/initrd-extra.cpio"
fi

mkfs.ext4 -q -F -L kubeboot-vm -d "$root" "$work/disk.img" 2G
rm -rf "$root"
echo "prepared $work/disk.img"
