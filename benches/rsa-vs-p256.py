#!/usr/bin/env python3
"""RSA-2048 vs ECDSA-P256 certificate trees: `kubeboot render` of two kubeadm
init configs that differ only in encryptionAlgorithm, interleaved; reports the
median CPU time (user + sys of the child, robust on a loaded machine), wall
time and the bytes written. Usage:
    cargo build --release --bin kubeboot
    python3 benches/rsa-vs-p256.py target/release/kubeboot [ROUNDS]
"""
import os, shutil, statistics, subprocess, sys, tempfile, time

CONFIG = """apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
nodeRegistration: {name: cp-1}
localAPIEndpoint: {advertiseAddress: 10.0.0.10}
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
encryptionAlgorithm: %s
"""

def main():
    binary = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 9
    work = tempfile.mkdtemp(prefix="kubeboot-rsa-")
    algs = ["ECDSA-P256", "RSA-2048"]
    cpu = {a: [] for a in algs}
    wall = {a: [] for a in algs}
    size = {}
    for a in algs:
        with open(os.path.join(work, a + ".yaml"), "w") as f:
            f.write(CONFIG % a)
    for _ in range(rounds):
        for a in algs:
            root = os.path.join(work, "root-" + a)
            shutil.rmtree(root, ignore_errors=True)
            start = time.perf_counter()
            p = subprocess.Popen([binary, "render", "--config", os.path.join(work, a + ".yaml"),
                                  "--root", root], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            _, status, ru = os.wait4(p.pid, 0)
            if status != 0:
                sys.exit(f"render failed for {a}")
            wall[a].append((time.perf_counter() - start) * 1000)
            cpu[a].append((ru.ru_utime + ru.ru_stime) * 1000)
            kdir = os.path.join(root, "etc/kubernetes")
            pki = sum(os.path.getsize(os.path.join(d, f))
                      for d, _, fs in os.walk(os.path.join(kdir, "pki")) for f in fs)
            kc = sum(os.path.getsize(os.path.join(kdir, f)) for f in os.listdir(kdir) if f.endswith(".conf"))
            size[a] = (pki, kc)
    for a in algs:
        print(f"{a:<11} CPU median {statistics.median(cpu[a]):8.1f} ms (min {min(cpu[a]):.1f}, "
              f"max {max(cpu[a]):.1f}); wall median {statistics.median(wall[a]):8.1f} ms; "
              f"pki/ {size[a][0]} B, kubeconfigs {size[a][1]} B; {rounds} rounds")
    shutil.rmtree(work)

if __name__ == "__main__":
    main()
