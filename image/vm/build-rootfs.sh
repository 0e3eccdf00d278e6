#!/bin/sh
# Build the cached base root tree for the VM boot test (tests/vm_boot.rs):
# a minimal Debian bookworm with systemd, systemd-networkd and a kernel +
# initramfs that can boot from a virtio disk. Nothing kubeboot-specific is in
# here (prepare-image.sh adds that per run), so this tree is reused across runs.
#   image/vm/build-rootfs.sh OUT [MIRROR]
# Needs root (debootstrap chroots) and the network (the Debian mirror).
# Builds into OUT.partial and renames it to OUT only when complete, so an
# interrupted build is never mistaken for a cached one.
set -eu
out=${1:?usage: build-rootfs.sh OUT [MIRROR]}
mirror=${2:-${KUBEBOOT_VM_MIRROR:-http://deb.debian.org/debian}}
suite=bookworm
# systemd + systemd-sysv: the real init system under test. udev: networkd only
# manages links udev has initialised. linux-image-amd64 + initramfs-tools:
# the kernel and an initrd with virtio_blk/ext4.
packages=systemd,systemd-sysv,udev,kmod,linux-image-amd64,initramfs-tools

[ "$(id -u)" = 0 ] || { echo "build-rootfs.sh: debootstrap needs root" >&2; exit 2; }
command -v debootstrap >/dev/null || { echo "build-rootfs.sh: install debootstrap" >&2; exit 2; }

tmp=$out.partial
rm -rf "$tmp"
mkdir -p "$tmp"
debootstrap --variant=minbase --include="$packages" "$suite" "$tmp" "$mirror"

# The network: DHCP on any ethernet link (QEMU user networking answers on
# 10.0.2.15), brought up by systemd-networkd, whose wait-online service is
# what makes network-online.target mean "configured" (enabled by hand: the
# same symlinks `systemctl enable systemd-networkd` makes).
cat > "$tmp/etc/systemd/network/20-wired.network" <<'NET'
[Match]
Type=ether

[Network]
DHCP=ipv4
NET
mkdir -p "$tmp/etc/systemd/system/multi-user.target.wants" \
         "$tmp/etc/systemd/system/sockets.target.wants" \
         "$tmp/etc/systemd/system/network-online.target.wants"
ln -sf /lib/systemd/system/systemd-networkd.service \
   "$tmp/etc/systemd/system/multi-user.target.wants/systemd-networkd.service"
ln -sf /lib/systemd/system/systemd-networkd.socket \
   "$tmp/etc/systemd/system/sockets.target.wants/systemd-networkd.socket"
ln -sf /lib/systemd/system/systemd-networkd-wait-online.service \
   "$tmp/etc/systemd/system/network-online.target.wants/systemd-networkd-wait-online.service"
ln -sf /lib/systemd/system/systemd-networkd.service \
   "$tmp/etc/systemd/system/dbus-org.freedesktop.network1.service"

# Keep the serial console for the test's output: no login prompt on it.
ln -sf /dev/null "$tmp/etc/systemd/system/serial-getty@ttyS0.service"
ln -sf /dev/null "$tmp/etc/systemd/system/getty@tty1.service"

echo vmtest > "$tmp/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 vmtest\n' > "$tmp/etc/hosts"
echo '/dev/vda / ext4 rw,errors=remount-ro 0 1' > "$tmp/etc/fstab"
# Keep the journal on disk so the second boot can show the first one too.
mkdir -p "$tmp/var/log/journal"

# Smaller tree, faster mkfs per run.
rm -rf "$tmp/var/cache/apt/archives/"*.deb "$tmp/var/lib/apt/lists/"* \
       "$tmp/usr/share/doc" "$tmp/usr/share/man" "$tmp/usr/share/locale"

rm -rf "$out"
mv "$tmp" "$out"
echo "built base root tree in $out"
