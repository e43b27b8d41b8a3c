"""`python -m scripts.bench.netpol_backend [--pods N]`: nftables vs iptables+ipset for NetworkPolicy, measured.

The same synthetic node state (N isolated pods, each with a per-pod ingress chain matching one of N/10
shared peer sets of 50 addresses, plus a drop) is programmed both ways inside a fresh `nk8sb-`
namespace: nftables as netk8s.policy.nftables renders it (one `nft -f` transaction, vmap dispatch),
iptables-legacy + ipset the kube-router/Calico way (`ipset restore` + `iptables-restore --noflush`,
one `-d IP -j chain` dispatch rule per pod). Reported: full programming time, one incremental peer
change (an address added to a set), and one policy change (a pod's chain rewritten), best of 3.
"""

from __future__ import annotations

import argparse
import subprocess
import time

from netk8s.dataplane import netns
from netk8s.policy import nftables as R

NS = "nk8sb-npbackend"


def run(argv: list[str], stdin: str | None = None) -> float:
    t0 = time.perf_counter()
    p = subprocess.run(["ip", "netns", "exec", NS, *argv], input=stdin, text=True, capture_output=True, check=False)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(argv)}: {p.stderr.strip()[:300]}")
    return time.perf_counter() - t0


def pod_ip(i: int) -> str:
    return f"10.{100 + i // 65536}.{(i // 256) % 256}.{i % 256}"


def nft_state(pods: int) -> R.NodeRules:
    rules = R.NodeRules()
    for s in range(max(pods // 10, 1)):
        rules.sets[f"peer-{s}"] = tuple(pod_ip(50 * s + k + 1) for k in range(50))
    for i in range(pods):
        chain = f"in-{i}"
        rules.chains[chain] = (f"ip saddr @peer-{i % len(rules.sets)} meta l4proto tcp th dport 80 counter return",
                               "counter drop")
        rules.comments[chain] = f"ns/pod{i}"
        rules.ingress[pod_ip(i + 1)] = chain
    return rules


def iptables_text(pods: int, sets: int) -> tuple[str, str]:
    ipset = "".join(f"create np-{s} hash:ip\n" + "".join(f"add np-{s} {pod_ip(50 * s + k + 1)}\n" for k in range(50))
                    for s in range(sets))
    lines = ["*filter", ":NP-FORWARD - [0:0]"] + [f":NP-IN-{i} - [0:0]" for i in range(pods)]
    lines += ["-A NP-FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT"]
    lines += [f"-A NP-FORWARD -d {pod_ip(i + 1)} -j NP-IN-{i}" for i in range(pods)]
    for i in range(pods):
        lines += [f"-A NP-IN-{i} -p tcp -m set --match-set np-{i % sets} src --dport 80 -j RETURN",
                  f"-A NP-IN-{i} -j DROP"]
    return ipset, "\n".join(lines + ["COMMIT", ""])


def best(fn, n: int = 3) -> float:  # type: ignore[no-untyped-def]
    return min(fn() for _ in range(n))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pods", type=int, default=1000)
    pods = ap.parse_args().pods
    netns.create_netns(NS)
    try:
        state = nft_state(pods)
        full = R.render_full(state)
        nft_full = best(lambda: run(["nft", "-f", "-"], full))
        grown = R.NodeRules(dict(state.sets), dict(state.chains), dict(state.ingress), {}, dict(state.comments))
        grown.sets["peer-0"] = state.sets["peer-0"] + ("10.250.0.1",)
        add_one = R.render_diff(state, grown)
        back = R.render_diff(grown, state)
        nft_elem = best(lambda: run(["nft", "-f", "-"], add_one) + 0 * run(["nft", "-f", "-"], back))
        edited = R.NodeRules(dict(state.sets), dict(state.chains), dict(state.ingress), {}, dict(state.comments))
        edited.chains["in-0"] = ("meta l4proto tcp th dport 81 counter return", "counter drop")
        nft_chain = best(lambda: run(["nft", "-f", "-"], R.render_diff(state, edited))
                         + 0 * run(["nft", "-f", "-"], R.render_diff(edited, state)))
        run(["nft", "delete", "table", R.FAMILY, R.TABLE])

        ipset, ipt = iptables_text(pods, len(state.sets))

        def ipt_full() -> float:
            run(["iptables-legacy", "-t", "filter", "-F"])
            run(["iptables-legacy", "-t", "filter", "-X"])
            run(["ipset", "destroy"])
            return run(["ipset", "restore"], ipset) + run(["iptables-legacy-restore", "--noflush"], ipt)

        ipt_all = best(ipt_full)
        ipt_elem = best(lambda: run(["ipset", "add", "np-0", "10.250.0.1"]) + 0 * run(["ipset", "del", "np-0", "10.250.0.1"]))
        one_chain = "*filter\n:NP-IN-0 - [0:0]\n-A NP-IN-0 -p tcp --dport 81 -j RETURN\n-A NP-IN-0 -j DROP\nCOMMIT\n"
        ipt_chain = best(lambda: run(["iptables-legacy-restore", "--noflush"], one_chain))
        run(["iptables-legacy", "-t", "filter", "-F"])
        run(["iptables-legacy", "-t", "filter", "-X"])
        run(["ipset", "destroy"])
        print(f"pods={pods} sets={len(state.sets)}")
        print(f"{'':24}{'nftables':>12}{'iptables+ipset':>16}")
        for what, a, b in (("full programming", nft_full, ipt_all), ("add one peer address", nft_elem, ipt_elem),
                           ("rewrite one pod chain", nft_chain, ipt_chain)):
            print(f"{what:24}{a * 1000:>10.1f}ms{b * 1000:>14.1f}ms")
    finally:
        netns.delete_netns(NS)


if __name__ == "__main__":
    main()
