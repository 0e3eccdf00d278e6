#!/usr/bin/env python3
"""Peak RSS of `kubeboot config validate` on three large cloud-configs
(issue 9: <= 2.5 x input + 8 MiB). Generates the inputs (deterministic:
seeded pseudo-random payloads) into DIR, runs `/usr/bin/time -f %M BIN
config validate FILE` RUNS times each (the peak RSS of a process does not
depend on load: the median is quoted only to be safe) and prints input
size, peak RSS, goal and PASS/FAIL (docs/building.md).

    python3 benches/validate-memory.py BIN [DIR] [RUNS]

The inputs:
  one-big     one write_files entry: 6,300,000 bytes, base64 (8.4 MB) as a
              literal block of 76-column lines
  many-small  20,000 small plain entries and one 6,000,000-byte base64 one (8 MB)
  limit       one base64 entry making the file just under the 16 MiB limit
and two beyond issue 9's table, to show what small entries cost:
  small-only  the 20,000 small entries of many-small alone
  all-small   small entries only, as many as stay under the 16 MiB limit
Each carries a kubeboot worker config, so that validation succeeds.
"""
import base64
import os
import random
import statistics
import subprocess
import sys

HEAD = """#cloud-config
kubeboot:
  apiVersion: kubeboot.dev/v1alpha1
  role: worker
  server: 10.0.0.10:6443
  token: abcdef.0123456789abcdef
  caCertHash: sha256:a5c1107a20290cfd98e8ec46a53f94c3894f0a6fef4d0628c47f00e6a43bd18b
write_files:
"""
LIMIT = 16 * 1024 * 1024


def payload(n, seed):
    return random.Random(seed).randbytes(n)


def b64_entry(path, data):
    text = base64.b64encode(data).decode()
    lines = "".join("      " + text[i:i + 76] + "\n" for i in range(0, len(text), 76))
    return f"  - path: {path}\n    encoding: b64\n    permissions: '0644'\n    content: |\n{lines}"


def small_entry(i):
    return f"  - path: /opt/small/file-{i}.txt\n    content: small file {i}\n"


def inputs(d):
    os.makedirs(d, exist_ok=True)
    out = {}
    out["one-big"] = HEAD + b64_entry("/opt/blob.bin", payload(6_300_000, 1))
    out["many-small"] = HEAD + "".join(small_entry(i) for i in range(20_000)) + b64_entry(
        "/opt/blob.bin", payload(6_000_000, 2))
    # the largest payload whose file stays under the limit (1 KiB spare)
    n = (LIMIT - 1024 - len(HEAD) - 200) * 76 // 83 * 3 // 4
    out["limit"] = HEAD + b64_entry("/opt/blob.bin", payload(n, 3))
    out["small-only"] = HEAD + "".join(small_entry(i) for i in range(20_000))
    entries, size, i = [], len(HEAD), 0
    while size + len(small_entry(i)) <= LIMIT - 1024:
        entries.append(small_entry(i))
        size += len(entries[-1])
        i += 1
    out["all-small"] = HEAD + "".join(entries)
    paths = {}
    for name, text in out.items():
        p = os.path.join(d, name + ".cloud-config.yaml")
        with open(p, "w") as f:
            f.write(text)
        assert os.path.getsize(p) < LIMIT, name
        paths[name] = p
    return paths


def peak_kib(binary, path):
    r = subprocess.run(["/usr/bin/time", "-f", "%M", binary, "config", "validate", path],
                       capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{path}: kubeboot config validate failed:\n{r.stderr}")
    return int(r.stderr.strip().splitlines()[-1])


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    binary = sys.argv[1]
    d = sys.argv[2] if len(sys.argv) > 2 else "/tmp/kubeboot-validate-memory"
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    for name, p in inputs(d).items():
        size = os.path.getsize(p) / 2**20
        peak = statistics.median(peak_kib(binary, p) for _ in range(runs)) / 1024
        goal = 2.5 * size + 8
        verdict = "PASS" if peak <= goal else "FAIL"
        print(f"{name:11} input {size:6.2f} MiB  peak RSS {peak:6.1f} MiB  "
              f"goal <= {goal:5.1f} MiB  {verdict}")


if __name__ == "__main__":
    main()
