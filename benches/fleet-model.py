#!/usr/bin/env python3
"""A model of tests/fleet.rs: what the peak-window ratio of a fleet is when
nothing but the clients' own timing shapes it (no machine, no scheduler).

Each worker starts at a uniform time in the spawn window, waits a uniform
part of startSpread (kubeboot's start spread), then sends its requests one
after another (4 per join: cluster-info, the verified refetch, kubelet-config,
its Node). The stand-in admits LIMIT requests at a time for SERVICE seconds
each and answers the rest 429 with Retry-After: 1. A refused worker waits as
kubeboot's retry loop does (src/net/http.rs `next_wait`): Retry-After plus a
uniform jitter of up to max(cap, Retry-After), cap = 250 ms doubling per
attempt up to 5 s, reset for each request. The ratio is the issue's: after
the first second, the most requests in any 100 ms window starting at a
request, over the mean per 100 ms up to the last request.

Usage: python3 benches/fleet-model.py [SEEDS]   (prints one line per setup;
the lines "without jitter" wait exactly Retry-After, as a client without the
jitter would; "growing with each 429" keeps a per-worker count of refusals
across requests and widens the jitter to 0.25 s x 2^count, at most 30 s)
"""
import heapq
import random
import sys


def run(seed, n=300, spawn=0.9, spread=10.0, limit=4, service=0.1, reqs=4, jitter=True,
        escalate=False):
    rnd = random.Random(seed)
    events = []
    for w in range(n):
        heapq.heappush(events, (rnd.uniform(0, spawn) + rnd.uniform(0, spread), "send", w))
    step = [0] * n
    attempt = [0] * n
    refusals = [0] * n  # a worker's 429s so far, less one per success (escalate)
    in_flight = 0
    sent = []
    done = []
    while events:
        t, kind, w = heapq.heappop(events)
        if kind == "send":
            sent.append(t)
            if in_flight < limit:
                in_flight += 1
                heapq.heappush(events, (t + service, "answered", w))
            else:
                attempt[w] += 1
                refusals[w] += 1
                cap = min(0.25 * 2 ** (attempt[w] - 1), 5.0)
                if escalate:
                    cap = max(cap, min(0.25 * 2 ** refusals[w], 30.0))
                wait = 1.0 + (rnd.uniform(0, max(cap, 1.0)) if jitter else 0.0)
                heapq.heappush(events, (t + wait, "send", w))
        else:
            in_flight -= 1
            step[w] += 1
            attempt[w] = 0
            refusals[w] = max(0, refusals[w] - 1)
            if step[w] < reqs:
                heapq.heappush(events, (t + 0.005, "send", w))
            else:
                done.append(t)
    sent.sort()
    after = [x for x in sent if x >= 1.0]
    mean = len(after) * 0.1 / max(after[-1] - 1.0, 0.1)
    peak, j = 0, 0
    for i, t in enumerate(after):
        while j < len(after) and after[j] < t + 0.1:
            j += 1
        peak = max(peak, j - i)
    done.sort()
    return len(sent), peak / mean, done[len(done) // 2], done[int(0.99 * (len(done) - 1))]


def main():
    seeds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    setups = [(10, 4, True, False), (10, 4, False, False), (10, 4, True, True), (0, 4, True, False),
              (30, 4, True, False), (30, 16, True, False), (10, 16, True, False),
              (5, 32, True, False), (5, 32, False, False), (3, 64, True, False)]
    for spread, limit, jitter, escalate in setups:
        rows = [run(s, spread=spread, limit=limit, jitter=jitter, escalate=escalate)
                for s in range(seeds)]
        ratios = sorted(r[1] for r in rows)
        print(
            f"startSpread {spread:>2} s, limit {limit:>2}{'' if jitter else ', Retry-After without jitter'}"
            f"{', backoff growing with each 429 (to 30 s)' if escalate else ''}: requests {sum(r[0] for r in rows) // seeds}, "
            f"ratio median {ratios[len(ratios) // 2]:.2f} (min {ratios[0]:.2f}, max {ratios[-1]:.2f}), "
            f"join p50 {sum(r[2] for r in rows) / seeds:.1f} s, p99 {sum(r[3] for r in rows) / seeds:.1f} s"
        )


if __name__ == "__main__":
    main()
