"""Run a benchmark protocol with one method and collect the results JSON of DESIGN.md.

``run_protocol`` loads the protocol's images (or a folder given instead), degrades each
one per case with the case's fixed seed (``protocols.prepare_case``), runs the method,
scores the estimate with the protocol's PSNR/SSIM convention and returns::

    {"protocol", "method", "settings": {...}, "environment": {...},
     "results": [{"image", "kernel", "sigma", "scale", "psnr", "ssim", "seconds",
                  "iters", "seed", "method_settings"}, ...],
     "summary": {"mean_psnr", "mean_ssim", "mean_seconds", "n", "groups": {...}}}

σ is in 8-bit units in the JSON (as in the papers' tables); ``seconds`` is the wall time
of the method's ``run`` call alone (degradation and scoring excluded). ``method_settings``
is the method's ``Result.settings``: every hyper-parameter as resolved by the call (preset
values and defaults included), so a row says what ran even after a default changes.
"""
from __future__ import annotations

import inspect
import json
import re
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..compute import environment, resolve_device, resolve_precision
from ..io import write_image, write_json_atomic
from ..methods import get_method
from ..metrics import psnr, ssim
from ..noise import sigma_to_unit
from . import data as bench_data
from .protocols import Case, PreparedCase, Protocol, get_protocol, prepare_case, protocol_cases

__all__ = ["run_protocol", "case_id", "summarize"]

GROUP_KEYS = ("kernel", "sigma", "scale")


def case_id(image: str, kernel=None, sigma=0.0, scale=None) -> str:
    """File-name-safe id of one (image, case): ``'im_1_kernel_01_s2.55'``, ``'baby_x2'``."""
    parts = [image]
    if kernel is not None:
        parts.append(str(kernel))
    if sigma:
        parts.append(f"s{float(sigma):g}")
    if scale is not None:
        parts.append(f"x{int(scale)}")
    return re.sub(r"[^A-Za-z0-9._-]+", "-", "_".join(parts))


def _group_label(key: str, value) -> str:
    return f"{key}={float(value):g}" if key == "sigma" else f"{key}={value}"


def _means(rows: list[dict]) -> dict:
    return {"mean_psnr": float(np.mean([r["psnr"] for r in rows])),
            "mean_ssim": float(np.mean([r["ssim"] for r in rows])),
            "mean_seconds": float(np.mean([r["seconds"] for r in rows])),
            "n": len(rows)}


def summarize(results: list[dict]) -> dict:
    """Means over all results, and per value of each case dimension that is used.

    ``groups`` maps ``'sigma=2.55'``, ``'kernel=kernel_01'``, ``'scale=2'`` ... to the means
    of the results with that value (dimensions that are ``None`` throughout, and σ when
    every case is noise-free, are left out).
    """
    if not results:
        raise ValueError("no results to summarise")
    summary = _means(results)
    groups: dict[str, dict] = {}
    for key in GROUP_KEYS:
        values = []
        for r in results:
            if r.get(key) is not None and r[key] not in values:
                values.append(r[key])
        if key == "sigma" and values == [0.0]:
            continue  # noise-free throughout: a "sigma=0" group would repeat the total
        for v in values:
            groups[_group_label(key, v)] = _means([r for r in results if r.get(key) == v])
    summary["groups"] = groups
    return summary


_ROW_KEYS = {"image", "kernel", "sigma", "scale", "psnr", "ssim", "seconds", "iters", "seed", "interrupted",
             "trace", "resumed_from"}


def _snapshot_callback(wanted: set, snapshots: dict, keep: Path | None = None):
    """A method callback keeping the estimate (and elapsed seconds) at the ``wanted`` iterations;
    with ``keep``, also in that file, so a fit resumed from its checkpoint has the earlier ones."""
    def callback(t, x, info) -> bool:
        if t in wanted:
            snapshots[t] = (x.detach().to("cpu", torch.float32).clamp(0, 1).clone(), info.get("seconds"))
            if keep is not None:
                keep.parent.mkdir(parents=True, exist_ok=True)
                torch.save(snapshots, keep)
        return False
    return callback


def fit_checkpoint_dir(results_json) -> Path:
    """Where a benchmark keeps the in-fit checkpoints of its unfinished cases:
    ``results/X.json`` → ``results/X.ckpt/`` (ignored by git)."""
    path = Path(results_json)
    return path.with_name(path.stem + ".ckpt")


def _summarize_trace(results: list[dict]) -> dict:
    """Mean PSNR and seconds at each traced iteration reached by every row that has a trace."""
    rows = [r["trace"] for r in results if r.get("trace")]
    if not rows:
        return {}
    common = set(rows[0]).intersection(*rows[1:])
    return {t: {"mean_psnr": float(np.mean([r[t]["psnr"] for r in rows])),
                "mean_seconds": float(np.mean([r[t]["seconds"] for r in rows])), "n": len(rows)}
            for t in sorted(common, key=int)}


def _summarize_extra(results: list[dict]) -> dict:
    """Mean, min and max of each numeric per-row value a protocol's ``extra_metrics`` added."""
    out = {}
    for key in dict.fromkeys(k for r in results for k in r if k not in _ROW_KEYS):
        vals = [r[key] for r in results if isinstance(r.get(key), (int, float))
                and not isinstance(r.get(key), bool)]
        if vals:
            out[key] = {"mean": float(np.mean(vals)), "min": float(np.min(vals)),
                        "max": float(np.max(vals)), "n": len(vals)}
    return out


def run_summary(results: list[dict], interrupted: bool = False, partial: bool = False) -> dict:
    """The ``summary`` of a results JSON: :func:`summarize` over the finished rows (a case
    stopped mid-fit keeps its row, with its trace so far, but enters no mean), the means of
    the protocol's extra metrics and of the trace, and the run's ``interrupted`` / ``partial``
    flags."""
    complete = [r for r in results if not r.get("interrupted")]
    summary = summarize(complete) if complete else {"n": 0}
    if len(complete) < len(results):
        summary["interrupted_cases"] = len(results) - len(complete)
    extra = _summarize_extra(complete)
    if extra:
        summary["extra"] = extra
    trace = _summarize_trace(complete)
    if trace:
        summary["trace"] = trace
    if interrupted:
        summary["interrupted"] = True
    if partial:
        summary["partial"] = True
    return summary


def _jsonable(value):
    """``value`` with what JSON cannot hold made plain: tensors and arrays become a
    description (dtype and shape), NumPy scalars numbers, other objects their ``str``."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return f"{type(value).__name__} {str(value.dtype).replace('torch.', '')} {list(value.shape)}"
    return str(value)


def merge_results(runs: dict[str, dict], assume: dict | None = None) -> dict:
    """One results JSON from runs of the same protocol, method and settings on other cases —
    images run as separate jobs (one per core, or on several machines) — as if one run had
    done them all, so its summary and ``paper-table`` average over every case.

    ``runs`` maps a name (the file's) to a results JSON. The settings that make results
    comparable (those ``--resume`` checks) must agree, and no case may be in two runs; both
    are errors. The merged settings list every image and case; ``settings['merged_from']``
    keeps each run's name, images and environment (``environment`` is the first run's).
    A case stopped mid-fit in one run keeps its row, which enters no mean, as in a run.

    ``assume`` maps method parameters to values: a run that did not pass one of them is
    declared to have run with that value (its default then — e.g. a run made after the
    default changed, beside one that passed the value explicitly). A row whose recorded
    ``method_settings`` contradict the declaration is an error; the merged settings keep the
    declaration and the files it was applied to (``settings['merge_assumed']``).
    """
    if len(runs) < 2:
        raise ValueError("merging needs at least two results JSONs")
    if assume:
        runs = {name: _with_assumed_params(name, run, assume) for name, run in runs.items()}
    (first_name, first), *others = runs.items()
    base = first["settings"]
    for name, run in others:
        differing = [k for k in ("protocol", "method") if run.get(k) != first.get(k)]
        differing += _differing_settings(run["settings"], base)
        if differing:
            raise ValueError(f"cannot merge {name} with {first_name}: they were run with different "
                             f"{', '.join(dict.fromkeys(differing))}")
    rows, source = [], {}
    for name, run in runs.items():
        for row in run["results"]:
            key = row_key(row)
            if key in source:
                raise ValueError(f"case {row['image']} {Case(*key[1:]).label()} is in both {source[key]} "
                                 f"and {name}: merge runs of different cases")
            source[key] = name
            rows.append(row)
    settings = dict(base)
    settings["image_names"] = list(dict.fromkeys(n for run in runs.values()
                                                 for n in run["settings"]["image_names"]))
    settings["cases"] = list({(c["kernel"], c["sigma"], c["scale"]): c for run in runs.values()
                              for c in run["settings"]["cases"]}.values())
    settings["case_filter"] = settings["limit"] = None
    settings["merged_from"] = [{"file": name, "image_names": run["settings"]["image_names"],
                                "cases": run["settings"]["cases"], "environment": run.get("environment")}
                               for name, run in runs.items()]
    if assume:
        settings["merge_assumed"] = {"params": dict(assume),
                                     "applied_to": [name for name, run in runs.items() if run.get("_assumed")]}
    return {"protocol": first["protocol"], "method": first["method"], "settings": settings,
            "environment": first.get("environment"), "results": rows, "summary": run_summary(rows)}


def _with_assumed_params(name: str, run: dict, assume: dict) -> dict:
    """``run`` with the ``assume`` parameters it did not pass added to its method_params
    (see :func:`merge_results`); checked against its rows' recorded settings."""
    params = dict(run["settings"].get("method_params") or {})
    added = {k: v for k, v in assume.items() if k not in params}
    for row in run["results"]:
        recorded = row.get("method_settings") or {}
        clash = [k for k, v in added.items() if k in recorded and recorded[k] != v]
        if clash:
            raise ValueError(f"cannot assume {', '.join(f'{k}={added[k]!r}' for k in clash)} for {name}: "
                             f"its row {row['image']} records {', '.join(f'{k}={recorded[k]!r}' for k in clash)}")
    if not added:
        return run
    return {**run, "settings": {**run["settings"], "method_params": {**params, **added}}, "_assumed": True}


def _select_cases(all_cases: list[Case], cases) -> list[Case]:
    """Apply the ``cases`` filter of :func:`run_protocol`."""
    if cases is None:
        return all_cases
    if callable(cases):
        chosen = [c for c in all_cases if cases(c)]
    else:
        unknown = set(cases) - set(GROUP_KEYS)
        if unknown:
            raise ValueError(f"cases filter keys must be among {GROUP_KEYS}, got {sorted(unknown)}")
        cast = {"kernel": str, "sigma": float, "scale": int}

        def wanted(c: Case) -> bool:
            for key, allowed in cases.items():
                allowed = allowed if isinstance(allowed, (list, tuple, set)) else [allowed]
                value = getattr(c, key)
                if value is None or cast[key](value) not in {cast[key](a) for a in allowed}:
                    return False
            return True

        chosen = [c for c in all_cases if wanted(c)]
    if not chosen:
        raise ValueError(f"the cases filter {cases!r} selects none of "
                         f"{', '.join(c.label() for c in all_cases)}")
    return chosen


def _load_images(protocol: Protocol, folder: Path, limit: int | None,
                 only: tuple | None) -> list[tuple[str, np.ndarray]]:
    images = []
    paths = bench_data.list_images(folder)
    if only is not None:
        missing = sorted(set(only) - {p.stem for p in paths})
        if missing:
            raise ValueError(f"images {missing} not in {folder}")
        paths = [p for p in paths if p.stem in only]
    for path in paths:
        if protocol.color == "rgb" and protocol.gray_images == "skip":
            pixels = bench_data.load_image(path, "keep")
            if pixels.shape[2] == 1:
                continue
        else:
            pixels = bench_data.load_image(path, protocol.color)
        images.append((path.stem, pixels))
        if limit is not None and len(images) >= limit:
            break
    if not images:
        raise ValueError(f"no usable images in {folder} for protocol {protocol.name!r}")
    return images


def _scoring_text(convention: dict) -> str:
    """How a protocol's PSNR differs from the plain one, in words (``convention``: crop, y_channel,
    quantize as passed to :func:`deepprior.metrics.psnr`)."""
    parts = []
    if convention.get("y_channel"):
        parts.append("Y channel")
    if convention.get("crop"):
        parts.append(f"{convention['crop']}-pixel border cropped")
    if convention.get("quantize"):
        parts.append("output rounded to 8 bits")
    return ", ".join(parts) or "plain"


def _observation_for_display(prep: PreparedCase, task: str) -> torch.Tensor:
    """The observation drawn in image space (same size and channels as ``x``)."""
    x, y = prep.x, prep.y
    if y.shape == x.shape:
        return y
    if y.shape[1] != x.shape[1]:  # a CFA: each sample in its own colour channel
        return prep.operator.adjoint(y)
    if task != "sr":  # e.g. a 'valid' blur: the lost border padded back by replication
        z = prep.operator.initial_estimate(y)
        if z.shape == x.shape:
            return z
    return F.interpolate(y, size=tuple(x.shape[-2:]), mode="nearest")


def run_protocol(name: str, method: str | None = None, data_root=None, images=None,
                 limit: int | None = None, iters: int | None = None, cases=None,
                 device: str = "auto", precision: str = "auto", method_params: dict | None = None,
                 progress: bool = True, save_images=None, checkpoint=None, resume: bool = False,
                 image_names=None, seed_offset: int = 0) -> dict:
    """Run benchmark protocol ``name`` with one method.

    Parameters
    ----------
    name : str
        A protocol of ``protocols.PROTOCOLS`` (``deepprior bench --list``).
    method : str, optional
        Method name (``methods.get_method``); default: the protocol's.
    data_root : path-like, optional
        Folder of the test sets; default per ``data.data_root`` (``../shared/data`` or
        ``$DEEPPRIOR_DATA``). Not needed when ``images`` is given and the protocol uses no
        kernels.
    images : path-like, optional
        A folder of clean images replacing the protocol's test set.
    limit : int, optional
        Only the first N usable images (sorted by file name).
    image_names : list of str, optional
        Only these images (file stems); default the protocol's ``image_names`` (all if None).
    seed_offset : int
        Added to the seed the method gets (the observation, drawn with the case seed, stays
        the same): another run of a stochastic method on the same data, for run-to-run spread.
    iters : int, optional
        Iterations; default: the protocol's when its default method runs, else the
        method's own (paper) default.
    cases : dict or callable, optional
        Case filter: ``{'sigma': 25}``, ``{'scale': [2, 4]}``, ``{'kernel': 'kernel_01'}``
        (σ in 8-bit units), or ``cases(case) -> bool`` on :class:`protocols.Case`.
    device, precision : str
        Passed to the method (resolved first, and recorded in ``environment``).
    method_params : dict, optional
        Extra keyword parameters of the method (added to the protocol's defaults for it).
    progress : bool
        Print one line per case (and show the method's progress bar on a terminal).
    save_images : path-like, optional
        Folder for per-case 8-bit PNGs ``<case_id>_{clean,degraded,restored}.png``
        (``degraded`` drawn in image space), used by ``report.write_report``.
    checkpoint : path-like, optional
        Write the results JSON here after every case (``summary.partial`` is true until the
        last case), so a run that is killed keeps what it finished. Methods that checkpoint
        their own fit (DIP, DeepRED: a ``checkpoint`` parameter) also save the state of the
        case in progress every few minutes, in :func:`fit_checkpoint_dir` (with the PSNR
        snapshots taken so far).
    resume : bool
        With ``checkpoint``: keep the finished cases of an existing checkpoint written with the
        same protocol, method, iterations, parameters, precision and test set, and run only the
        missing ones — a case that was stopped mid-fit continues from its fit checkpoint (its
        row's ``seconds`` then add the time before the stop; ``resumed_from`` says where). A
        checkpoint from different settings is an error (delete it or pass another path), and so
        is one holding finished cases the run does not select (the rewritten file would lose
        them): the selection may widen a run, never narrow it.

    Returns
    -------
    dict
        The results JSON of DESIGN.md (see the module docstring).

    Raises
    ------
    ValueError
        Unknown protocol or method, a method that does not solve the protocol's task, or a
        filter/limit that selects nothing.
    FileNotFoundError
        Missing data root, test set or kernel set.
    """
    protocol = get_protocol(name)
    method = method or protocol.method
    info = get_method(method)
    if protocol.task not in info.tasks:
        raise ValueError(f"method {method!r} does not solve task {protocol.task!r} of protocol "
                         f"{name!r} (it solves: {', '.join(info.tasks)})")
    is_default = method == protocol.method
    if iters is None and is_default:
        iters = protocol.iters
    params = dict(protocol.method_params) if is_default else {}
    params.update(method_params or {})

    needs_root = images is None or (protocol.kernels is not None
                                    and protocol.kernels not in bench_data.BUILTIN_KERNEL_SETS)
    root = bench_data.data_root(data_root) if needs_root else (
        Path(data_root).resolve() if data_root is not None else None)
    folder = Path(images).resolve() if images is not None else bench_data.dataset_dir(protocol.dataset, root)
    kernels = bench_data.load_kernels(protocol.kernels, root) if protocol.kernels else {}
    selected = _select_cases(protocol_cases(protocol, kernels), cases)
    # --image names a subset; otherwise the protocol's own (unless a folder replaces its test set)
    only = tuple(image_names) if image_names else (protocol.image_names if images is None else None)
    clean_images = _load_images(protocol, folder, limit, only)

    dev = resolve_device(device)
    prec = resolve_precision(precision, dev)
    env = environment()
    # the resolved policy passed to the method (non-network methods run fp32 regardless)
    env.update(device=str(dev), precision=prec, precision_requested=precision)
    method_precision = None
    out_dir = Path(save_images) if save_images is not None else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)

    settings = {
        "protocol": protocol.name, "description": protocol.description, "task": protocol.task,
        "dataset": protocol.dataset, "data_root": None if root is None else str(root),
        "images": str(folder), "image_names": [n for n, _ in clean_images], "limit": limit,
        "cases": [{"kernel": c.kernel, "sigma": c.sigma, "scale": c.scale} for c in selected],
        "case_filter": None if cases is None else ("callable" if callable(cases) else dict(cases)),
        "method": method, "iters": iters, "method_params": params,
        "sigma_units": "8-bit (sigma=25 means 25/255)", "noise_known": protocol.noise_known,
        "color": protocol.color, "gray_images": protocol.gray_images,
        "kernel_set": protocol.kernels, "boundary": protocol.boundary,
        "sr_filter": protocol.sr_filter, "missing": protocol.missing, "pattern": protocol.pattern,
        "quantize_observation": protocol.quantize_observation,
        "psnr": protocol.psnr_convention(),
        "seed_rule": "sha256('task|image|kernel=..|sigma=..|scale=..')[:4] little-endian & 0x7fffffff; "
                     "mask drawn before noise; the method gets the same seed plus seed_offset",
        "seed_offset": int(seed_offset),
        "device": str(dev), "precision": prec,
        "extra_metrics": getattr(protocol.extra_metrics, "__name__", None),
        "save_images": None if out_dir is None else str(out_dir),
        "dae_weights": _dae_weights(info, params, 3 if protocol.color == "rgb" else 1, protocol.task),
    }

    total = len(clean_images) * len(selected)
    results = _resumed_rows(checkpoint, settings) if (checkpoint is not None and resume) else []
    done = {row_key(r) for r in results}
    if results and progress:
        print(f"resuming from {checkpoint}: {len(results)} of {total} cases already done", flush=True)
    interrupted = False

    def finished() -> int:  # cases with a result (not stopped mid-fit)
        return sum(not r.get("interrupted") for r in results)

    def assemble(partial: bool) -> dict:
        # what the method says its network ran with; methods without a network compute in fp32/fp64
        env["precision"] = method_precision if method_precision is not None else "fp32"
        return {"protocol": protocol.name, "method": method, "settings": settings, "environment": env,
                "results": results, "summary": run_summary(results, interrupted=interrupted, partial=partial)}

    try:
        for image, pixels in clean_images:
            for case in selected:
                if (image, case.kernel, case.sigma, case.scale) in done:
                    continue
                prep = prepare_case(protocol, image, pixels, case,
                                    kernels.get(case.kernel) if case.kernel else None)
                sigma = sigma_to_unit(case.sigma) if protocol.noise_known else None
                kernel = kernels.get(case.kernel) if case.kernel else None
                convention = dict(crop=protocol.crop_for(case, kernel), y_channel=protocol.y_channel,
                                  quantize=protocol.quantize)
                if progress and any(convention.values()):
                    print(f"{image} {case.label()}: progress lines give the plain PSNR (all channels, "
                          f"whole image); the protocol's PSNR ({_scoring_text(convention)}) is printed "
                          f"when the case ends", flush=True)
                snapshots: dict[int, tuple] = {}
                run_kw, keep = {}, None
                if checkpoint is not None and "checkpoint" in inspect.signature(info.run).parameters:
                    # a long fit saves its state as it goes; --resume continues it mid-case
                    cid = case_id(image, case.kernel, case.sigma, case.scale)
                    fit_file = fit_checkpoint_dir(checkpoint) / f"{cid}.pt"
                    keep = fit_file.with_suffix(".snapshots.pt")
                    if not resume:
                        fit_file.unlink(missing_ok=True)
                        keep.unlink(missing_ok=True)
                    elif keep.exists():
                        snapshots.update(torch.load(keep, weights_only=True))
                    run_kw["checkpoint"] = fit_file
                if protocol.trace_iters:
                    run_kw["callback"] = _snapshot_callback(set(protocol.trace_iters), snapshots, keep)
                t0 = time.perf_counter()
                res = info.run(prep.y, prep.operator, sigma=sigma, iters=iters, reference=prep.x,
                               seed=prep.seed + int(seed_offset), device=str(dev), precision=prec, progress=bool(progress),
                               **run_kw, **params)
                seconds = time.perf_counter() - t0
                resumed = (res.extras.get("checkpoint") or {}).get("resumed_from")
                if resumed:
                    seconds += resumed["seconds"]  # the method's time before its checkpoint
                if method_precision is None and isinstance(res.settings.get("precision"), str):
                    method_precision = res.settings["precision"]
                estimate = res.image.detach().to("cpu", torch.float32).clamp(0, 1)
                if estimate.shape != prep.x.shape:
                    raise RuntimeError(f"method {method!r} returned shape {tuple(estimate.shape)} "
                                       f"for a {tuple(prep.x.shape)} image")
                row = {"image": image, "kernel": case.kernel, "sigma": case.sigma,
                       "scale": case.scale, "psnr": psnr(estimate, prep.x, **convention),
                       "ssim": ssim(estimate, prep.x, **convention), "seconds": seconds,
                       "iters": int(res.iters), "seed": prep.seed + int(seed_offset),
                       "method_settings": _jsonable(res.settings)}
                if snapshots:
                    row["trace"] = {str(t): {"psnr": psnr(x, prep.x, **convention), "seconds": sec}
                                    for t, (x, sec) in sorted(snapshots.items())}
                if protocol.extra_metrics is not None:
                    context = {"run": info.run, "method": method, "iters": iters, "params": params,
                               "device": str(dev), "precision": prec, "convention": convention,
                               "kernel": kernel}
                    row.update(protocol.extra_metrics(protocol, case, prep, estimate, res, context))
                if res.interrupted:
                    row["interrupted"] = True
                if resumed:
                    row["resumed_from"] = resumed
                results.append(row)
                if out_dir is not None:
                    cid = case_id(image, case.kernel, case.sigma, case.scale)
                    write_image(out_dir / f"{cid}_clean.png", prep.x)
                    write_image(out_dir / f"{cid}_degraded.png",
                                _observation_for_display(prep, protocol.task))
                    write_image(out_dir / f"{cid}_restored.png", estimate)
                if progress:
                    print(f"[{len(results)}/{total}] {image:<12} {case.label():<22} "
                          f"PSNR {row['psnr']:6.2f} dB  SSIM {row['ssim']:.4f}  "
                          f"{seconds:8.2f} s  {row['iters']} it", flush=True)
                if res.interrupted:
                    raise KeyboardInterrupt
                if checkpoint is not None:
                    write_json_atomic(checkpoint, assemble(partial=finished() < total))
                    if keep is not None and not res.interrupted:
                        keep.unlink(missing_ok=True)
                        if not any(keep.parent.iterdir()):
                            keep.parent.rmdir()
    except KeyboardInterrupt:
        if not results:
            raise
        interrupted = True
        if progress:
            print(f"interrupted: {finished()} of {total} cases done", flush=True)

    return assemble(partial=finished() < total)


# settings that must agree for a checkpoint's rows to be reused
_RESUME_KEYS = ("protocol", "method", "iters", "method_params", "images", "precision", "task", "seed_offset",
                "psnr", "boundary", "sr_filter", "missing", "pattern", "kernel_set", "dae_weights")


def _dae_weights(info, params: dict, channels: int, task: str) -> dict | None:
    """The DAE weights a learned or hybrid method loads for the protocol's images: the file
    given as ``weights=`` or the shipped one for ``channels``, with its SHA-256 prefix. None
    when the method loads no DAE (RED / DeepRED with NLM, BM3D or TV as the denoiser)."""
    if info.kind not in ("learned", "hybrid"):
        return None
    if info.name in ("red", "deepred"):  # the DAE is only one of their denoisers
        from ..methods import deepred, red
        default = (red if info.name == "red" else deepred).default_denoiser(task)
        if (params.get("denoiser") or default) != "dae":
            return None
    from ..methods.prior import default_prior_weights
    from ..nets.dae import weights_digest
    given = params.get("weights")
    path = Path(given) if given is not None else default_prior_weights(info.name, channels)
    if not path.exists():
        return None
    return {"file": path.name, "sha256": weights_digest(path), "shipped": given is None}


# settings added after some checkpoints were written: their value when absent
_RESUME_DEFAULTS = {"seed_offset": 0}


def _differing_settings(a: dict, b: dict) -> list[str]:
    """The settings among ``_RESUME_KEYS`` in which two runs differ: results of runs that
    differ in none can be resumed into or merged with each other."""
    return [k for k in _RESUME_KEYS if a.get(k, _RESUME_DEFAULTS.get(k)) != b.get(k, _RESUME_DEFAULTS.get(k))]


def row_key(row: dict) -> tuple:
    """What identifies a case across runs: (image, kernel, σ, scale)."""
    return (row["image"], row["kernel"], row["sigma"], row["scale"])


def _resumed_rows(checkpoint, settings: dict) -> list[dict]:
    """Finished rows of an earlier run with the same settings (see ``run_protocol``)."""
    path = Path(checkpoint)
    if not path.exists():
        return []
    try:
        old = json.loads(path.read_text())
        old_settings = old["settings"]
        rows = old["results"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"cannot resume from {path}: not a results JSON ({exc})") from exc
    differing = _differing_settings(old_settings, settings)
    if differing:
        raise ValueError(f"cannot resume from {path}: it was run with different {', '.join(differing)}; "
                         "delete it or write to another --json path")
    wanted = {(c["kernel"], c["sigma"], c["scale"]) for c in settings["cases"]}
    names = set(settings["image_names"])
    finished = [r for r in rows if not r.get("interrupted")]
    selected = [r for r in finished if r["image"] in names and (r["kernel"], r["sigma"], r["scale"]) in wanted]
    if len(selected) < len(finished):  # the rewritten file would lose them: refuse rather than drop
        left_out = ", ".join(f"{r['image']} {Case(r['kernel'], r['sigma'], r['scale']).label()}"
                             for r in finished if r not in selected)
        raise ValueError(f"cannot resume from {path}: it holds finished results this run does not select "
                         f"({left_out}), which rewriting it would lose; select them too (finished cases "
                         "are kept, not rerun) or write to another --json path")
    return selected
