"""Plot benchmarks/out/soak.json: RSS and poll lateness over time (run by the peers venv).

plot_soak.py SOAK_JSON OUT_PNG
"""

from __future__ import annotations

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def main(src: str, dst: str) -> None:
    with open(src, encoding="utf-8") as f:
        d = json.load(f)
    s = d["samples"]
    t = [x["t"] / 60 for x in s]
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    ax1.plot(t, [x["rss_mb"] for x in s], label="RSS, daemon + workers (sum)")
    ax1.plot(t, [x["pss_mb"] for x in s], label="PSS, daemon + workers (sum)")
    ax1.plot(t, [x["parent_rss_mb"] for x in s], label="RSS, daemon process")
    ax1.set_ylabel("MB")
    ax1.set_ylim(bottom=0)
    ax1.legend(loc="lower right", fontsize=8)
    ax1.set_title(
        f"soak: {d['feeds']} feeds, interval {d['interval'] / 60:.0f} min,"
        f" {d['change_share'] * 100:.0f}% change per interval, {d['polls']} polls,"
        f" avg CPU {d['avg_cpu_share'] * 100:.1f}%",
        fontsize=10,
    )
    polls = [p for p in d["poll_log"] if p["late"] is not None]
    ax2.scatter(
        [p["t"] / 60 for p in polls], [p["late"] for p in polls], s=2, alpha=0.4, label="each poll"
    )
    ax2.plot(t, [x["worst_late"] for x in s], color="C3", label="worst per 5 s")
    ax2.set_ylabel("poll lateness (s)")
    ax2.legend(loc="upper right", fontsize=8)
    ax3.plot(t, [x.get("db_mb", 0.0) for x in s], color="C2", label="database on disk (file + WAL)")
    ax3.set_ylabel("MB")
    ax3.set_ylim(bottom=0)
    ax3.set_xlabel("minutes")
    ax3.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(dst, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
