"""Reading a profiling session's Chrome trace back: lane busy time, overlap, and the table.

Runs only after a session (never on the request path). Lane activity is taken from the trace
itself — the `lane{N}/item{I}` (or `sequential/item{I}`) ranges the scheduler records — so the
summary's numbers can be re-derived from `trace.json` by anyone, which the tests do.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

LANE_LABEL = re.compile(r"^(lane\d+|sequential)/items?(\d+)(?:-(\d+))?$")
BATCH_LABEL = re.compile(r"^batch\d+$")


def load_trace_events(path: str | Path) -> list[dict[str, Any]]:
    with open(path) as fh:
        data = json.load(fh)
    events = data["traceEvents"] if isinstance(data, dict) else data
    return [e for e in events if e.get("ph") == "X" and "dur" in e]


def lane_ranges(events: list[dict[str, Any]]) -> list[tuple[str, int, float, float]]:
    """(lane, items in the range, start_us, end_us) of every lane/item range on the CPU side."""
    out = []
    for e in events:
        match = LANE_LABEL.match(str(e.get("name", "")))
        if match and e.get("cat") in ("user_annotation", None):
            first, last = int(match.group(2)), int(match.group(3) or match.group(2))
            start = float(e["ts"])
            out.append((match.group(1), last - first + 1, start, start + float(e["dur"])))
    return out


def label_events(events: list[dict[str, Any]]) -> dict[str, list[tuple[float, float]]]:
    """lane name → sorted (start_us, end_us) of its item ranges."""
    lanes: dict[str, list[tuple[float, float]]] = {}
    for lane, _, start, end in lane_ranges(events):
        lanes.setdefault(lane, []).append((start, end))
    return {k: sorted(v) for k, v in sorted(lanes.items())}


def union_length(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for start, stop in sorted(intervals):
        if stop <= end:
            continue
        total += stop - max(start, end)
        end = stop
    return total


def overlap_stats(lanes: dict[str, list[tuple[float, float]]]) -> tuple[float, float]:
    """(time with ≥2 lanes busy, time with ≥1 lane busy), in µs, by a sweep over the edges."""
    # Union each lane first so a lane's own nested/adjacent ranges never count as overlap.
    merged = {k: _merge(v) for k, v in lanes.items()}
    edges = sorted(
        [(s, 1) for iv in merged.values() for s, _ in iv]
        + [(t, -1) for iv in merged.values() for _, t in iv],
        key=lambda p: (p[0], p[1]),
    )
    active, last, overlapped, busy = 0, 0.0, 0.0, 0.0
    for t, step in edges:
        if active >= 2:
            overlapped += t - last
        if active >= 1:
            busy += t - last
        active += step
        last = t
    return overlapped, busy


def _merge(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for s, t in sorted(intervals):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], t))
        else:
            out.append((s, t))
    return out


def lane_summary(events: list[dict[str, Any]]) -> dict[str, Any]:
    lanes = label_events(events)
    batches = [e for e in events if BATCH_LABEL.match(str(e.get("name", "")))]
    span_us = (
        max(e["ts"] + e["dur"] for e in batches) - min(e["ts"] for e in batches) if batches else 0.0
    )
    overlapped, any_busy = overlap_stats(lanes)
    items: dict[str, int] = {}
    for lane, count, _, _ in lane_ranges(events):
        items[lane] = items.get(lane, 0) + count
    per_lane = {
        name: {
            "items": items[name],
            "ranges": len(iv),
            "busy_ms": round(union_length(iv) / 1000, 3),
        }
        for name, iv in lanes.items()
    }
    total_busy = sum(union_length(iv) for iv in lanes.values())
    return {
        "workload_span_ms": round(span_us / 1000, 3),
        "lanes": per_lane,
        "items_labelled": sum(v["items"] for v in per_lane.values()),
        "any_lane_busy_ms": round(any_busy / 1000, 3),
        "overlap_ms": round(overlapped / 1000, 3),
        "overlap_fraction": round(overlapped / span_us, 4) if span_us else 0.0,
        "mean_parallelism": round(total_busy / span_us, 3) if span_us else 0.0,
        "kernel_events": sum(1 for e in events if e.get("cat") == "kernel"),
    }


def top_operators(key_averages: Any, limit: int = 10, cuda: bool = False) -> list[dict[str, Any]]:
    """Top aten operators by self time (device time on CUDA, CPU time otherwise)."""
    rows = []
    for avg in key_averages:
        if LANE_LABEL.match(avg.key) or BATCH_LABEL.match(avg.key):
            continue
        self_cpu = avg.self_cpu_time_total / 1000
        self_dev = getattr(avg, "self_device_time_total", 0.0) / 1000
        rows.append(
            {
                "name": avg.key,
                "calls": avg.count,
                "self_cpu_ms": round(self_cpu, 3),
                "self_device_ms": round(self_dev, 3),
            }
        )
    key = "self_device_ms" if cuda else "self_cpu_ms"
    return sorted(rows, key=lambda r: r[key], reverse=True)[:limit]


def render_summary_table(summary: dict[str, Any]) -> str:
    """The summary as a plain-text table (what `orch profile` prints)."""
    cfg, lanes = summary["config"], summary["lane_activity"]
    lines = [
        f"profile: {cfg['model']} on {summary['device']['name']} ({summary['device']['type']}), "
        f"{cfg['requests']} batches x {cfg['batch_size']} images at {cfg['size']} px, "
        f"{'sequential' if cfg['sequential'] else str(cfg['lanes']) + ' lanes'}",
        f"  throughput      {summary['throughput_images_per_s']:.3f} images/s "
        f"({summary['images']} images in {summary['wall_s']:.3f} s)",
        f"  overlap         {lanes['overlap_ms']:.1f} ms of {lanes['workload_span_ms']:.1f} ms "
        f"({100 * lanes['overlap_fraction']:.1f}%), "
        f"mean parallelism {lanes['mean_parallelism']:.2f}",
        f"  peak memory     {_memory_line(summary['memory'])}",
        "",
        f"  {'lane':<12}{'items':>7}{'busy ms':>12}",
    ]
    for name, lane in lanes["lanes"].items():
        lines.append(f"  {name:<12}{lane['items']:>7}{lane['busy_ms']:>12.1f}")
    lines += ["", f"  {'top operators':<44}{'calls':>7}{'self cpu ms':>13}{'self gpu ms':>13}"]
    for op in summary["top_operators"]:
        lines.append(
            f"  {op['name'][:43]:<44}{op['calls']:>7}{op['self_cpu_ms']:>13.1f}"
            f"{op['self_device_ms']:>13.1f}"
        )
    lines += [
        "",
        f"  trace   {summary['files']['trace']}  (open in https://ui.perfetto.dev"
        " or chrome://tracing)",
    ]
    nsys = summary.get("nsys", {})
    lines.append(f"  nsys    {nsys.get('report') or 'not captured: ' + str(nsys.get('reason'))}")
    spy = summary.get("py_spy") or {}
    if spy.get("flamegraph") or spy.get("reason") not in (None, "not requested"):
        shown = spy.get("flamegraph") or "not recorded: " + str(spy.get("reason"))
        lines.append(f"  flame   {shown}")
    return "\n".join(lines)


def _memory_line(memory: dict[str, Any]) -> str:
    if "cuda_peak_allocated_mb" in memory:
        return f"{memory['cuda_peak_allocated_mb']:.0f} MiB CUDA allocated (peak)"
    return f"{memory['host_peak_rss_mb']:.0f} MiB host RSS (peak; CPU run)"


def main(argv: list[str] | None = None) -> int:
    """`python -m gpu.trace_summary summary.json`: print a fetched summary as the table."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m gpu.trace_summary SUMMARY.json", file=sys.stderr)
        return 2
    with open(args[0]) as fh:
        print(render_summary_table(json.load(fh)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
