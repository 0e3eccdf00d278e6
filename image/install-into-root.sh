#!/bin/sh
# Install kubeboot and its units (first boot; daily certificate renewal timer) into an image tree (mkosi, Packer, debootstrap).
#   image/install-into-root.sh [--usr] ROOT [BINARY]
# BINARY defaults to the static release build (docs/building.md).
#
# Default: the unit goes to /etc/systemd/system and is enabled by the same
# symlink `systemctl enable` makes, so no systemd is needed at build time.
#
# --usr: everything under /usr only, for images whose /usr is read-only and
# whose /etc starts empty (Flatcar, Fedora CoreOS, systemd-sysext images):
#   /usr/bin/kubeboot
#   /usr/lib/systemd/system/kubeboot.service
#   /usr/lib/systemd/system-preset/50-kubeboot.preset   ("enable kubeboot.service")
# systemd applies presets on the first boot (empty /etc, `systemctl
# preset-all`), which enables the unit; nothing is written outside /usr.
set -eu
usr=no
if [ "${1:-}" = "--usr" ]; then
    usr=yes
    shift
fi
root=${1:?usage: install-into-root.sh [--usr] ROOT [BINARY]}
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${2:-$here/target/x86_64-unknown-linux-musl/release/kubeboot}
[ -x "$bin" ] || { echo "no binary at $bin; build it (docs/building.md)" >&2; exit 2; }
install -D -m 0755 "$bin" "$root/usr/bin/kubeboot"
if [ "$usr" = yes ]; then
    install -D -m 0644 "$here/units/kubeboot.service" "$root/usr/lib/systemd/system/kubeboot.service"
    mkdir -p "$root/usr/lib/systemd/system-preset"
    printf 'enable kubeboot.service\n' > "$root/usr/lib/systemd/system-preset/50-kubeboot.preset"
    chmod 0644 "$root/usr/lib/systemd/system-preset/50-kubeboot.preset"
    echo "installed kubeboot into $root/usr (enabled by preset)"
    exit 0
fi
install -D -m 0644 "$here/units/kubeboot.service" "$root/etc/systemd/system/kubeboot.service"
for u in kubeboot-certs-renew.service kubeboot-certs-renew.timer; do
  install -D -m 0644 "$here/units/$u" "$root/etc/systemd/system/$u"
done
mkdir -p "$root/etc/systemd/system/timers.target.wants"
ln -sf ../kubeboot-certs-renew.timer "$root/etc/systemd/system/timers.target.wants/kubeboot-certs-renew.timer"
mkdir -p "$root/etc/systemd/system/multi-user.target.wants"
ln -sf ../kubeboot.service "$root/etc/systemd/system/multi-user.target.wants/kubeboot.service"
mkdir -p "$root/var/lib/kubeboot"
# The man page and shell completions come from the binary itself (clap_mangen,
# clap_complete); a binary for another architecture cannot run here, so then
# they are left out with a note.
if "$bin" man > "$root/.kubeboot.1.tmp" 2>/dev/null; then
  install -D -m 0644 "$root/.kubeboot.1.tmp" "$root/usr/share/man/man1/kubeboot.1"
  "$bin" completion bash > "$root/.kubeboot.bash.tmp"
  install -D -m 0644 "$root/.kubeboot.bash.tmp" "$root/usr/share/bash-completion/completions/kubeboot"
  "$bin" completion zsh > "$root/.kubeboot.zsh.tmp"
  install -D -m 0644 "$root/.kubeboot.zsh.tmp" "$root/usr/share/zsh/vendor-completions/_kubeboot"
  "$bin" completion fish > "$root/.kubeboot.fish.tmp"
  install -D -m 0644 "$root/.kubeboot.fish.tmp" "$root/usr/share/fish/vendor_completions.d/kubeboot.fish"
else
  echo "note: could not run $bin here; man page and completions not installed" >&2
fi
rm -f "$root/.kubeboot.1.tmp" "$root/.kubeboot.bash.tmp" "$root/.kubeboot.zsh.tmp" "$root/.kubeboot.fish.tmp"
echo "installed kubeboot into $root"
