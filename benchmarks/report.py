"""Read pytest-benchmark's JSON and print the figures, the ratios (this design /
baseline), the targets, and how each cost grows with the corpus; write a chart
of lock hold and reload time against corpus size to docs/img/.

    python benchmarks/report.py .benchmarks/latest.json [--chart docs/img/reload-vs-corpus.png]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
from collections import defaultdict
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CHART = os.path.join(ROOT, "docs", "img", "reload-vs-corpus.png")


def load(path: str) -> dict[str, Any]:
    with open(path) as fh:
        doc: dict[str, Any] = json.load(fh)
    return doc


def index(doc: dict[str, Any]) -> dict[tuple[str, ...], dict[str, Any]]:
    """(test, size, variant) -> {median_ms, extra}"""
    out: dict[tuple[str, ...], dict[str, Any]] = {}
    for bench in doc["benchmarks"]:
        name = bench["name"]
        test = name.split("[")[0]
        params = re.search(r"\[(.*)\]", name)
        parts = params.group(1).split("-") if params else []
        # the corpus size is the part like "5k", wherever the test's ids put it ("5k-idle",
        # "fast-import-5k"); the rest, in order, is the variant
        size = next((part for part in parts if re.fullmatch(r"\d+k", part)), "")
        variant = "-".join(part for part in parts if part != size)
        out[(test, size, variant)] = {"median_ms": bench["stats"]["median"] * 1000,
                                      "extra": bench.get("extra_info", {})}
    return out


def records_of(size: str) -> int:
    return int(size.rstrip("k")) * 1000


def fmt(ms: float | None) -> str:
    if ms is None:
        return "-"
    return f"{ms:,.2f}" if ms < 100 else f"{ms:,.0f}"


def slope(points: list[tuple[int, float]]) -> float | None:
    """Exponent b of cost ~ records^b, least squares on log-log (0: flat, 1: linear)."""
    pts = [(math.log(n), math.log(max(v, 1e-6))) for n, v in points if v > 0]
    if len(pts) < 2:
        return None
    mx, my = statistics.fmean(x for x, _ in pts), statistics.fmean(y for _, y in pts)
    den = sum((x - mx) ** 2 for x, _ in pts)
    return sum((x - mx) * (y - my) for x, y in pts) / den if den else None


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def report(doc: dict[str, Any]) -> tuple[str, dict[str, list[tuple[int, float]]]]:
    data = index(doc)
    sizes = sorted({k[1] for k in data if k[1]}, key=records_of)
    lines = [f"Machine: {doc.get('machine_info', {}).get('cpu', {}).get('brand_raw', '?')}, "
             f"{doc.get('machine_info', {}).get('cpu', {}).get('count', '?')} cores; "
             f"run {doc.get('datetime', '?')[:19]}", ""]
    series: dict[str, list[tuple[int, float]]] = defaultdict(list)

    rows = []
    for change in ("one-record", "ten-percent"):
        for size in sizes:
            mine = data.get(("test_reload_this_design", size, change))
            base = data.get(("test_reload_baseline", size, change))
            if not mine or not base:
                continue
            hold_m, hold_b = mine["extra"]["lock_held_ms_median"], base["extra"]["lock_held_ms_median"]
            e2e_m, e2e_b = mine["median_ms"], base["median_ms"]
            n = records_of(size)
            series[f"lock hold, this design, {change}"].append((n, hold_m))
            series[f"lock hold, baseline, {change}"].append((n, hold_b))
            series[f"reload, this design, {change}"].append((n, e2e_m))
            series[f"reload, baseline, {change}"].append((n, e2e_b))
            rows.append([change, f"{n:,}", fmt(hold_m), fmt(hold_b), f"{hold_b / hold_m:,.0f}x",
                         fmt(e2e_m), fmt(e2e_b), f"{e2e_b / e2e_m:,.1f}x"])
    lines += ["## Reloads (medians, ms)", "", table(
        ["change", "records", "lock hold: this", "lock hold: baseline", "baseline/this",
         "end to end: this", "end to end: baseline", "baseline/this"], rows), ""]

    rows = []
    for size in sizes:
        build = data.get(("test_full_build", size, ""))
        start = data.get(("test_process_cold_start", size, ""))
        floor = data.get(("test_floor_cat_file_and_tomllib", size, ""))
        restart = data.get(("test_process_restart_with_snapshot_cache", size, ""))
        if build and start and floor:
            rows.append([f"{records_of(size):,}", fmt(build["median_ms"]), fmt(start["median_ms"]),
                         fmt(floor["median_ms"]), f"{start['median_ms'] / floor['median_ms']:.2f}x",
                         fmt(restart["median_ms"]) if restart else "-",
                         f"1/{start['median_ms'] / restart['median_ms']:.1f}" if restart else "-"])
    lines += ["## Cold start (medians, ms)", "", table(
        ["records", "full build (in-process)", "process start to healthy", "floor: cat-file + tomllib",
         "start/floor", "restart from the snapshot cache", "restart/start"], rows), ""]

    rows = []
    for size in sizes:
        idle = data.get(("test_reader_latency", size, "idle"))
        for load_ in ("idle", "during-reloads"):
            got = data.get(("test_reader_latency", size, load_))
            if not got:
                continue
            e = got["extra"]
            for name, figures in [("all", e), *sorted(e.get("routes", {}).items())]:
                idle_e = idle["extra"] if idle else {}
                before = idle_e if name == "all" else idle_e.get("routes", {}).get(name)
                ratio = f"{figures['p99_ms'] / before['p99_ms']:.1f}x" if before else "-"
                rows.append([f"{records_of(size):,}", load_, name, str(figures.get("requests", "-")),
                             f"{figures['rps']:,.0f}" if "rps" in figures else "-", fmt(figures["p50_ms"]),
                             fmt(figures["p99_ms"]), ratio, str(e.get("reloads", 0))])
    lines += ["## What readers feel (4 keep-alive clients reading every route class in turn, 8 server threads)", "",
              table(["records", "load", "route class", "requests", "req/s", "p50 ms", "p99 ms",
                     "p99 / idle p99 (target <= 3x)", "reloads meanwhile"], rows), ""]

    rows = []
    for size in sizes:
        got = data.get(("test_memory", size, ""))
        if got:
            e = got["extra"]
            rows.append([f"{records_of(size):,}", f"{e['steady_rss_mb']:.0f}", f"{e['peak_rss_mb']:.0f}",
                         f"{e['peak_over_steady']:.2f}x", str(e["reloads"])])
    lines += ["## Memory (server RSS, MB)", "", table(
        ["records", "steady", "peak during reloads", "peak/steady", "reloads"], rows), ""]

    rows = []
    for name, points in sorted(series.items()):
        b = slope(points)
        if b is not None:
            rows.append([name, f"{b:.2f}", "flat" if b < 0.25 else ("sub-linear" if b < 0.8 else "linear or worse")])
    lines += ["## Growth with the corpus (cost ~ records^b, log-log fit)", "",
              table(["series", "b", "reads as"], rows), ""]
    lines += ["## Targets", "", *targets(data, sizes)]
    return "\n".join(lines), series


def targets(data: dict[tuple[str, ...], dict[str, Any]], sizes: list[str]) -> list[str]:
    big, small = sizes[-1], sizes[0]
    out = []

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    mine_big = data.get(("test_reload_this_design", big, "one-record"))
    mine_small = data.get(("test_reload_this_design", small, "one-record"))
    build = data.get(("test_full_build", big, ""))
    start = data.get(("test_process_cold_start", big, ""))
    floor = data.get(("test_floor_cat_file_and_tomllib", big, ""))
    memory = data.get(("test_memory", big, ""))
    n = f"{records_of(big):,}"
    if mine_big and mine_small:
        hb, hs = mine_big["extra"]["lock_held_ms_median"], mine_small["extra"]["lock_held_ms_median"]
        out.append(f"- lock hold, one record, {n}: median {hb:.2f} ms (target <= 5 ms): {verdict(hb <= 5)}; "
                   f"{hb / hs:.2f}x the {records_of(small):,}-record figure {hs:.2f} ms (target <= 3x): "
                   f"{verdict(hb <= 3 * hs)}")
    if mine_big and build:
        r = build["median_ms"] / mine_big["median_ms"]
        out.append(f"- one-record reload end to end {mine_big['median_ms']:.0f} ms vs full rebuild "
                   f"{build['median_ms']:.0f} ms: 1/{r:.0f} (target <= 1/20): {verdict(r >= 20)}")
    if mine_big and start:
        r = start["median_ms"] / mine_big["median_ms"]
        out.append(f"- one-record reload vs cold start {start['median_ms']:.0f} ms: 1/{r:.0f} "
                   f"(target <= 1/10): {verdict(r >= 10)}")
    if start and floor:
        r = start["median_ms"] / floor["median_ms"]
        out.append(f"- cold start {start['median_ms']:.0f} ms = {r:.2f}x the floor {floor['median_ms']:.0f} ms "
                   f"(target <= 2.5x): {verdict(r <= 2.5)}")
    if memory:
        e = memory["extra"]
        out.append(f"- peak RSS during reloads {e['peak_rss_mb']:.0f} MB = {e['peak_over_steady']:.2f}x steady "
                   f"{e['steady_rss_mb']:.0f} MB (target <= 1.3x): {verdict(e['peak_over_steady'] <= 1.3)}; "
                   f"steady aim <= 300 MB: {verdict(e['steady_rss_mb'] <= 300)}")
    return out


def chart(series: dict[str, list[tuple[int, float]]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, what in zip(axes, ("lock hold", "reload"), strict=True):
        for name, points in sorted(series.items()):
            if not name.startswith(what):
                continue
            xs, ys = zip(*sorted(points), strict=True)
            style = "-" if "this design" in name else "--"
            marker = "o" if "one-record" in name else "s"
            ax.plot(xs, ys, style, marker=marker, label=name.split(", ", 1)[1])
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("records in the corpus")
        ax.set_ylabel("ms (median)")
        ax.set_title("data lock held per reload" if what == "lock hold" else "reload end to end")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=110)


def history_report(doc: dict[str, Any]) -> str:
    """One-record reloads on a long history divided by the same on a short one,
    per corpus, transport and kind (targets: <= 1.5x); health p99 with a push
    pending (target: <= 5 ms)."""
    reloads: dict[tuple[int, str, str], dict[int, float]] = defaultdict(dict)
    health = []
    for bench in doc["benchmarks"]:
        extra = bench.get("extra_info", {})
        if bench["name"].startswith("test_one_record_reload_on_history"):
            key = (extra["records"], extra["transport"], extra["kind"])
            reloads[key][extra["history"]] = bench["stats"]["median"] * 1000
        elif bench["name"].startswith("test_health_with_a_pending_push"):
            health.append(extra)
    if not reloads and not health:
        return ""
    rows = []
    for (records, transport, kind), by_history in sorted(reloads.items()):
        short, long = min(by_history), max(by_history)
        if short == long:
            continue
        ratio = by_history[long] / by_history[short]
        rows.append([f"{records // 1000}k", transport, kind, fmt(by_history[short]), fmt(by_history[long]),
                     f"{ratio:.2f}x {'ok' if ratio <= 1.5 else 'MISSED'} (<= 1.5x)",
                     f"{long:,} commits"])
    lines = ["", "One-record reload, long history vs short (medians, same run):",
             table(["corpus", "transport", "reload", "short", "long", "long / short", "long history"], rows)]
    for extra in health:
        p99 = extra["p99_ms"]
        lines.append(f"\nGET /api/health with {extra['pending']} push pending, {extra['history']:,} commits, "
                     f"{extra['records'] // 1000}k records: p50 {extra['p50_ms']:.2f} ms, p99 {p99:.2f} ms "
                     f"({'ok' if p99 <= 5 else 'MISSED'}, <= 5 ms)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("json")
    parser.add_argument("--chart", default=DEFAULT_CHART)
    args = parser.parse_args()
    doc = load(args.json)
    text, series = report(doc)
    print(text)
    print(history_report(doc))
    if series:
        chart(series, args.chart)
        print(f"\nchart: {os.path.relpath(args.chart)}")


if __name__ == "__main__":
    main()
