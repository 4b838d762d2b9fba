"""Medians, ratios, roofline and kernel-ceiling fractions, RSS by stage and the printed table of bench/generate.py
(not run on its own).

Ratios are edge-agent / transformers.js: above 1 is better for tokens/s, below 1 is better for TTFT and RSS.
Prefill tokens/s is prompt tokens / time to first token on both sides.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
from pathlib import Path
from typing import Any

import kernel_ceiling

METRICS = ("prefill_tokens_per_s", "decode_tokens_per_s", "ttft_ms", "peak_rss_mb", "load_s")
SIDES = {"ours": "edge-agent", "peer": "transformers.js"}
RSS_STAGES = ("load_peak_mb", "after_load_mb", "prefill_peak_mb", "decode_peak_mb")


def load_average() -> dict[str, Any]:
    """The load average now, and `uptime` as printed."""
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    return {"loadavg": list(os.getloadavg()), "uptime": uptime}


def model_shape(model: Path) -> dict[str, Any]:
    """The benchmark model's shape (bench_model.json from build_bench_model.py, else config.json)."""
    built = model / "bench_model.json"
    if built.is_file():
        return dict(json.loads(built.read_text()))
    text = json.loads((model / "config.json").read_text()).get("text_config", {})
    keys = ("vocab_size", "num_hidden_layers", "num_kv_shared_layers", "hidden_size")
    return {k: text.get(k) for k in keys}


def one_line(figures: dict[str, Any]) -> str:
    """A worker's figures on one line."""
    return (
        f"prefill {figures['prefill_tokens_per_s']:8.1f} tok/s  decode {figures['decode_tokens_per_s']:7.2f} tok/s"
        f"  ttft {figures['ttft_ms']:9.1f} ms  peak RSS {figures['peak_rss_mb']:7.1f} MiB"
        f"  load {figures['load_s']:.1f} s"
    )


def _medians(runs: list[dict[str, Any]]) -> dict[str, float]:
    return {m: statistics.median(float(r[m]) for r in runs) for m in METRICS}


def summarize(report: dict[str, Any]) -> None:
    """Add report['summary']: per case medians by side, ratios, same ids; and the roofline fractions."""
    summary: dict[str, Any] = {}
    for name, case in report["cases"].items():
        medians = {side: _medians(runs) for side, runs in case["runs"].items()}
        entry: dict[str, Any] = {"medians": medians}
        if "peer" in medians:
            entry["ratio"] = {m: medians["ours"][m] / medians["peer"][m] for m in METRICS if medians["peer"][m]}
            entry["same_ids"] = case["runs"]["ours"][0]["ids"] == case["runs"]["peer"][0]["ids"]
        entry["distinct_ids"] = len(set(case["runs"]["ours"][0]["ids"]))
        summary[name] = entry
    if "roofline" in report:
        roof = report["roofline"]
        bandwidth = roof["bandwidth"][str(report["threads"])]
        per_token = roof["weights"]["total"]
        roof["bound_tokens_per_s"] = bandwidth / per_token
        kernel = roof.get("kernel")
        for entry in summary.values():
            entry["roofline_fraction"] = {
                side: m["decode_tokens_per_s"] * per_token / bandwidth for side, m in entry["medians"].items()
            }
            if kernel and kernel["seconds_per_token"]:
                # decode speed / the speed if a token took only its MatMulNBits kernels' time: ours only, the kernels
                # are timed at ours' accuracy levels (the peer runs the files' own)
                ours = entry["medians"]["ours"]["decode_tokens_per_s"]
                entry["kernel_fraction"] = {"ours": ours * kernel["seconds_per_token"]}
    for name, case in report["cases"].items():
        stages = [r["rss"] for r in case["runs"].get("ours", []) if "rss" in r]
        if stages:
            summary[name]["rss_stages"] = {
                key: statistics.median(s[key] for s in stages)
                for key in RSS_STAGES
                if all(s.get(key) is not None for s in stages)
            }
            summary[name]["rss_end"] = stages[-1].get("end", {})
    report["summary"] = summary


def _row(label: str, values: dict[str, float], ratio: float | None, fmt: str) -> str:
    ours = format(values["ours"], fmt) if "ours" in values else "-"
    peer = format(values["peer"], fmt) if "peer" in values else "-"
    return f"  {label:38s} {ours:>12s} {peer:>16s} {'' if ratio is None else format(ratio, '.2f'):>7s}"


def _case_rows(name: str, case: dict[str, Any], entry: dict[str, Any]) -> list[str]:
    prompt, new = case["prompt_tokens"], case["new_tokens"]
    labels = {
        "prefill_tokens_per_s": (f"prefill tok/s, {prompt} prompt", ".1f"),
        "ttft_ms": (f"TTFT ms, {prompt} prompt", ".0f"),
        "decode_tokens_per_s": (f"decode tok/s, {new} new after {prompt}", ".2f"),
        "peak_rss_mb": (f"peak RSS MiB ({prompt}+{new} run)", ".0f"),
        "load_s": ("load s (sessions)", ".1f"),
    }
    rows = [f"  [{name}]"]
    for metric, (label, fmt) in labels.items():
        values = {side: m[metric] for side, m in entry["medians"].items()}
        rows.append(_row(label, values, entry.get("ratio", {}).get(metric), fmt))
    if "roofline_fraction" in entry:
        rows.append(_row("decode / roofline bound", entry["roofline_fraction"], None, ".1%"))
    if "kernel_fraction" in entry:
        rows.append(_row("decode / MatMulNBits-alone bound", entry["kernel_fraction"], None, ".1%"))
    rows += _rss_rows(entry)
    if "same_ids" in entry:
        rows.append(f"  same greedy ids: {entry['same_ids']}; distinct ids (ours): {entry['distinct_ids']}")
    return rows


def _rss_rows(entry: dict[str, Any]) -> list[str]:
    """Ours' RSS by stage (medians) and, from the last run, resident memory by mapping at the end."""
    stages = entry.get("rss_stages")
    if not stages:
        return []
    labels = {"load_peak_mb": "load peak", "after_load_mb": "after load", "prefill_peak_mb": "prefill peak"}
    labels["decode_peak_mb"] = "decode peak"
    rows = ["  ours' RSS MB: " + ", ".join(f"{labels[k]} {v:.0f}" for k, v in stages.items())]
    end = entry.get("rss_end") or {}
    if end:
        files = ", ".join(f"{name} {size:.0f}" for name, size in end["files_mb"].items())
        rows.append(
            f"    at the end: anonymous {end['anonymous_mb']:.0f}, file-backed {end['file_backed_mb']:.0f} ({files})"
        )
    return rows


def _kernel_rows(report: dict[str, Any]) -> list[str]:
    kernel = report["roofline"].get("kernel")
    if not kernel:
        return []
    bandwidth = report["roofline"]["bandwidth"][str(report["threads"])]
    rows = kernel_ceiling.describe(kernel)
    rows.append(f"  MatMulNBits alone reads at {kernel['bandwidth'] / bandwidth:.1%} of the measured read bandwidth")
    return rows


def _roofline_rows(report: dict[str, Any]) -> list[str]:
    roof = report["roofline"]
    weights = roof["weights"]
    parts = [f"{k} {v / 1e6:.1f}" for k, v in weights["decoder"].items()]
    bandwidth = ", ".join(f"{t} thread(s) {b / 1e9:.1f} GB/s" for t, b in roof["bandwidth"].items())
    rows = weights["embedding_rows"] / 1e6
    return [
        f"  roofline: read bandwidth {bandwidth} (best of 5 reads of 1 GiB)",
        f"  weight bytes per decode token (MB): {', '.join(parts)}, embedding rows {rows:.3f}"
        f"; total {weights['total'] / 1e6:.1f} MB",
        f"  decode bound at {report['threads']} thread(s): {roof['bound_tokens_per_s']:.2f} tok/s",
    ]


def table(report: dict[str, Any]) -> str:
    """The readable table of a finished report."""
    shape = report["bench_model"]
    layers, vocab = shape.get("num_hidden_layers"), shape.get("vocab_size")
    lines = [
        f"{report['model']} {report['variant']}: {layers} layers, vocab {vocab}"
        f", threads {report['threads']}, {report['rounds']} round(s) in fresh processes, medians",
        f"  load at start: {report['load_start']['uptime']}",
        f"  load at end:   {report['load_end']['uptime']}",
        f"  {'':38s} {'edge-agent':>12s} {'transformers.js':>16s} {'ratio':>7s}",
    ]
    for name, case in report["cases"].items():
        lines += _case_rows(name, case, report["summary"][name])
    options = report["cases"]["prompt"]["runs"]["ours"][0]["engine_options"]
    lines.append(f"  engine options: {', '.join(f'{k}={v}' for k, v in options.items())}")
    if "roofline" in report:
        lines += _roofline_rows(report) + _kernel_rows(report)
    return "\n".join(lines)
