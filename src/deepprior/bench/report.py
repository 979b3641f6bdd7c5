"""Markdown report of one benchmark run (the dict returned by ``runner.run_protocol``).

The report shows the protocol's description (its paper table and PSNR convention), every
setting, one table per group (e.g. per σ or per scale; one row per result), the summary
with the per-group means, and — when the run saved its images — a side-by-side strip per
case: clean | degraded | restored, a 128×128 central crop each.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..io import _atomic_write_bytes, read_image, write_image
from .runner import case_id

__all__ = ["write_report", "render_report", "comparison_strip"]

CROP_SIZE = 128
_SEPARATOR = 4  # white pixels between the three crops of a strip


def _cell(value) -> str:
    if value is None:
        text = "–"
    elif isinstance(value, float):
        text = f"{value:.6g}"
    elif isinstance(value, (dict, list, tuple)):
        text = json.dumps(value, default=str, ensure_ascii=False)
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def _table_key(results: list[dict]) -> str | None:
    """The case dimension that splits the results into tables: the first that varies."""
    for key in ("scale", "sigma", "kernel"):
        if len({r.get(key) for r in results}) > 1:
            return key
    return None


def _central_crop(pixels: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    h, w = pixels.shape[:2]
    ch, cw = min(size, h), min(size, w)
    top, left = (h - ch) // 2, (w - cw) // 2
    return pixels[top:top + ch, left:left + cw]


def comparison_strip(clean: np.ndarray, degraded: np.ndarray, restored: np.ndarray) -> np.ndarray:
    """Central 128×128 crops of the three images side by side (H×W×C float32)."""
    crops = [_central_crop(p) for p in (clean, degraded, restored)]
    channels = max(c.shape[2] for c in crops)
    crops = [np.repeat(c, channels, axis=2) if c.shape[2] != channels else c for c in crops]
    height = max(c.shape[0] for c in crops)
    sep = np.ones((height, _SEPARATOR, channels), np.float32)
    parts = []
    for i, c in enumerate(crops):
        if c.shape[0] < height:
            c = np.pad(c, ((0, height - c.shape[0]), (0, 0), (0, 0)), constant_values=1.0)
        parts += ([sep] if i else []) + [c]
    return np.concatenate(parts, axis=1)


def _strips(result_json: dict, image_dir: Path, md_dir: Path) -> list[str]:
    lines = []
    for r in result_json["results"]:
        cid = case_id(r["image"], r.get("kernel"), r.get("sigma") or 0.0, r.get("scale"))
        files = [image_dir / f"{cid}_{kind}.png" for kind in ("clean", "degraded", "restored")]
        if not all(f.is_file() for f in files):
            continue
        strip = comparison_strip(*(read_image(f).pixels for f in files))
        out = image_dir / f"{cid}_compare.png"
        write_image(out, strip)
        link = Path(os.path.relpath(out, md_dir)).as_posix()
        lines += [f"**{cid}** — PSNR {r['psnr']:.2f} dB, SSIM {r['ssim']:.4f}", "",
                  f"![{cid}: clean | degraded | restored]({link})", ""]
    return lines


def render_report(result_json: dict, image_lines: list[str] | None = None) -> str:
    """The Markdown text of a report (without writing crops; see :func:`write_report`)."""
    settings, results, summary = result_json["settings"], result_json["results"], result_json["summary"]
    lines = [f"# Benchmark `{result_json['protocol']}` — method `{result_json['method']}`", ""]
    description = settings.get("description")
    if description:
        lines += [description.strip(), ""]
    s = summary
    stopped = s.get("interrupted_cases")
    mean = (f"**Mean over {s['n']} cases: PSNR {s['mean_psnr']:.2f} dB, SSIM {s['mean_ssim']:.4f}, "
            f"{s['mean_seconds']:.2f} s per case.**" if s["n"] else "**No case completed.**")
    lines += [mean + (" *(interrupted)*" if s.get("interrupted") else "")
              + (f" ({stopped} case(s) stopped mid-fit, not in the means)" if stopped else ""), ""]

    lines += ["## Settings", ""]
    lines += _table(["setting", "value"],
                    [[k, _cell(v)] for k, v in settings.items() if k != "description"])
    lines += ["", "## Environment", ""]
    lines += _table(["", "value"], [[k, _cell(v)] for k, v in result_json.get("environment", {}).items()])

    lines += ["", "## Results", "", "σ in 8-bit units; seconds = wall time of the method alone.", ""]
    key = _table_key(results)
    values = []
    for r in results:
        if r.get(key) not in values:
            values.append(r.get(key))
    header = ["image", "kernel", "σ", "scale", "PSNR (dB)", "SSIM", "seconds", "iters"]
    for v in values:
        rows = [r for r in results if r.get(key) == v]
        if key is not None:
            label = f"sigma={float(v):g}" if key == "sigma" else f"{key}={v}"
            lines += [f"### {label}", ""]
        body = [[_cell(r["image"]) + (" (stopped mid-fit)" if r.get("interrupted") else ""),
                 _cell(r.get("kernel")), _cell(r.get("sigma")), _cell(r.get("scale")),
                 f"{r['psnr']:.2f}", f"{r['ssim']:.4f}", f"{r['seconds']:.2f}", _cell(r.get("iters"))]
                for r in rows]
        complete = [r for r in rows if not r.get("interrupted")]
        if complete:
            body.append(["**mean**", "", "", "", f"**{np.mean([r['psnr'] for r in complete]):.2f}**",
                         f"**{np.mean([r['ssim'] for r in complete]):.4f}**",
                         f"**{np.mean([r['seconds'] for r in complete]):.2f}**", ""])
        lines += _table(header, body) + [""]

    if s["n"]:
        lines += ["## Summary", ""]
        groups = [("all", {k: s[k] for k in ("mean_psnr", "mean_ssim", "mean_seconds", "n")})]
        groups += list(s.get("groups", {}).items())
        lines += _table(["group", "n", "mean PSNR (dB)", "mean SSIM", "mean seconds"],
                        [[g, str(m["n"]), f"{m['mean_psnr']:.2f}", f"{m['mean_ssim']:.4f}",
                          f"{m['mean_seconds']:.2f}"] for g, m in groups])
        lines.append("")
    if image_lines:
        lines += ["## Images", "", f"Central {CROP_SIZE}×{CROP_SIZE} crops: clean | degraded | restored.", ""]
        lines += image_lines
    return "\n".join(lines).rstrip() + "\n"


def write_report(result_json: dict, path_md, image_dir=None) -> Path:
    """Write the Markdown report of a run to ``path_md`` (atomically).

    Parameters
    ----------
    result_json : dict
        What ``runner.run_protocol`` returned (or the JSON file it produced, loaded).
    path_md : path-like
        Destination ``.md``.
    image_dir : path-like, optional
        Folder where the run saved its images (``run_protocol(save_images=...)``); default
        ``settings['save_images']`` when that folder exists. The comparison strips
        ``<case_id>_compare.png`` are written there and linked relative to the report.

    Returns
    -------
    pathlib.Path
        ``path_md``.
    """
    path_md = Path(path_md)
    path_md.parent.mkdir(parents=True, exist_ok=True)
    if image_dir is None:
        image_dir = result_json.get("settings", {}).get("save_images")
    image_lines = None
    if image_dir is not None and Path(image_dir).is_dir():
        image_lines = _strips(result_json, Path(image_dir), path_md.resolve().parent)
    # the same atomic write (temporary file + os.replace) as every file io.py writes
    _atomic_write_bytes(path_md, render_report(result_json, image_lines).encode("utf-8"))
    return path_md


def plot_psnr_vs_seconds(results: list[dict], png, labels: list[str] | None = None, title: str = "") -> Path:
    """PSNR against wall time along the runs: one line per results JSON, from the per-row
    ``trace`` (PSNR in the protocol's convention at fixed iterations; ``summary['trace']``
    averages the rows), marked with the iteration counts. JSONs without a trace are skipped.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    drawn = 0
    for i, res in enumerate(results):
        trace = res.get("summary", {}).get("trace")
        if not trace:
            continue
        its = sorted(trace, key=int)
        secs = [trace[t]["mean_seconds"] for t in its]
        psnrs = [trace[t]["mean_psnr"] for t in its]
        label = labels[i] if labels and i < len(labels) else f"{res['protocol']} / {res['method']}"
        ax.plot(secs, psnrs, marker="o", ms=3, label=f"{label} (n={trace[its[0]]['n']})")
        for t, s, p in zip(its, secs, psnrs):
            ax.annotate(t, (s, p), fontsize=6, xytext=(2, -8), textcoords="offset points")
        drawn += 1
    if not drawn:
        plt.close(fig)
        raise ValueError("none of the results has a PSNR trace (protocols with trace_iters record one)")
    ax.set_xscale("log")
    ax.set_xlabel("seconds (log scale; numbers: iterations)")
    ax.set_ylabel("mean PSNR (dB), protocol convention")
    ax.set_title(title or "PSNR along the run", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    out = Path(png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
