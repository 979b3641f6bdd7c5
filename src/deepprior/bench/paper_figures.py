"""The papers' published figures, machine-readable, and our runs set beside them.

``PAPER_FIGURES`` holds the averages the five papers print for the protocols we reproduce (the
paper's row for a method, the cases it averages over, the table it comes from). ``paper_table``
reads results JSONs written by ``deepprior bench`` and, for every figure whose protocol, method
and variant match a run, averages the run's rows over the same cases — so the "ours vs paper"
tables of our issue notes are re-computed from committed JSONs by one command
(``deepprior paper-table``), never typed by hand.

The PSNR conventions are the protocols' (``bench/protocols*.py``); a figure is only compared
with a run of its own protocol. ``n`` is the number of cases the paper averages over: a run
with fewer finished cases is marked partial. Where our case set differs from the paper's, the
figure's ``note`` says so.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["PaperFigure", "PAPER_FIGURES", "run_variant", "paper_table", "row_has", "select_rows"]


@dataclass(frozen=True)
class PaperFigure:
    """One published average: ``value`` for ``method`` (``variant``) on the rows of
    ``protocol`` that match ``where`` (row field → value), from ``source``.

    ``metric`` is ``'psnr'`` (mean over the rows, dB) or ``'error_ratio<3.5'`` (how many rows
    have a kernel-blind error ratio below 3.5, DMSP Fig. 3). ``n``: cases the paper averages.
    ``per_image``: the paper's per-image values ((image, dB), …) where its table prints them —
    then a run is compared on the images both have, against the paper's mean over those.
    """

    protocol: str
    method: str
    where: tuple
    value: float
    n: int
    source: str
    variant: str | None = None
    metric: str = "psnr"
    note: str = ""
    per_image: tuple = ()

    def matches(self, row: dict) -> bool:
        return all(row_has(row, key, (want,)) for key, want in self.where)

    @property
    def case_label(self) -> str:
        return ", ".join(f"{k} {v:g}" if isinstance(v, (int, float)) else f"{k} {v}"
                         for k, v in self.where) or "all"


ROW_FIELDS = ("sigma", "scale", "kernel", "image")


def row_has(row: dict, field: str, values) -> bool:
    """Whether a results row's ``field`` equals one of ``values`` (numbers within 1e-3, so
    ``'2.55'`` from a command line matches σ = 2.55; names as strings)."""
    got = row.get(field)
    if got is None:
        return False
    for want in values:
        if isinstance(got, (int, float)):
            try:
                if math.isclose(float(got), float(want), abs_tol=1e-3):
                    return True
            except (TypeError, ValueError):
                continue
        elif str(got) == str(want):
            return True
    return False


def select_rows(result: dict, selection: str) -> dict:
    """``result`` with only the rows matching ``selection`` = ``'field=v1,v2'`` (a field of
    :data:`ROW_FIELDS`). Raises ``ValueError`` for a malformed selection."""
    field, eq, values = selection.partition("=")
    if not eq or field not in ROW_FIELDS:
        raise ValueError(f"bad row selection {selection!r}: use FIELD=V1,V2 with FIELD one of "
                         + ", ".join(ROW_FIELDS))
    wanted = values.split(",")
    return dict(result, results=[r for r in result.get("results", []) if row_has(r, field, wanted)])


def _series(protocol, method, key, values, figures, n, source, variant=None, note="", images=(),
            per_image=()):
    """One figure per ``values`` entry; ``per_image[i]`` lists the paper's values for ``images``
    in that case (empty: the paper prints only the average)."""
    per = [tuple(zip(images, row)) for row in per_image] or [()] * len(values)
    return [PaperFigure(protocol, method, ((key, v),), f, n, source, variant, note=note, per_image=pi)
            for v, f, pi in zip(values, figures, per)]


_LEVIN_SIGMAS = (2.55, 5.1, 7.65, 10.2)
_SR_SCALES = (2, 3, 4, 5)
_SET14_NOTE = "the paper's Table 3 lists 12 Set14 images (not bridge, man); ours has 14"
_SET5 = ("baby", "bird", "butterfly", "head", "woman")
_SET14 = ("baboon", "barbara", "bridge", "coastguard", "comic", "face", "flowers", "foreman", "lenna", "man",
          "monarch", "pepper", "ppt3", "zebra")
_DEEPRED_SET14 = tuple(i for i in _SET14 if i not in ("bridge", "man"))
_TABLE4 = ("butterfly", "leaves", "parrots", "starfish")
_DEEPRED_BLURS = ("uniform9", "gauss25_s1.6")

PAPER_FIGURES: tuple[PaperFigure, ...] = tuple(
    # --- DAEP (Bigdeli & Zwicker 2017)
    _series("levin-deblur", "daep", "sigma", (2.55, 7.65, 12.75), (32.69, 28.95, 26.87), 32, "DAEP Table 3")
    + _series("sr-set5", "daep", "scale", _SR_SCALES, (35.23, 31.44, 29.01, 27.19), 5, "DAEP Table 1")
    + _series("sr-set14", "daep", "scale", _SR_SCALES, (31.07, 27.93, 26.13, 24.88), 14, "DAEP Table 2")
    + _series("sr-set5", "bicubic", "scale", _SR_SCALES, (31.80, 28.67, 26.73, 25.32), 5, "DAEP Table 1")
    + _series("sr-set14", "bicubic", "scale", _SR_SCALES, (28.53, 25.92, 24.44, 23.46), 14, "DAEP Table 2")
    # --- DMSP (Bigdeli, Jin, Favaro & Zwicker, NIPS 2017)
    + _series("levin-deblur", "dmsp", "sigma", _LEVIN_SIGMAS, (29.68, 29.45, 28.95, 28.29), 32,
              "DMSP Table 2", "NB", note="29.68 at σ 2.55 is 2.9 dB below NA at the same σ (≤ 0.8 dB "
              "at the other σ): perhaps a typo")
    + _series("levin-deblur", "dmsp", "sigma", _LEVIN_SIGMAS, (32.57, 30.21, 29.00, 28.23), 32,
              "DMSP Table 2", "NA")
    + _series("berkeley-deblur", "dmsp", "sigma", _LEVIN_SIGMAS, (25.69, 24.45, 23.60, 22.99), 50,
              "DMSP Table 2", "NB")
    + _series("berkeley-deblur", "dmsp", "sigma", _LEVIN_SIGMAS, (26.00, 24.47, 23.61, 22.97), 50,
              "DMSP Table 2", "NA")
    + _series("sr-set5", "dmsp", "scale", _SR_SCALES, (35.16, 31.38, 29.16, 27.38), 5, "DMSP Table 3")
    + _series("sr-set14", "dmsp", "scale", _SR_SCALES, (30.99, 27.90, 26.22, 25.01), 14, "DMSP Table 3")
    + [PaperFigure("levin-blind", "dmsp", (), 32, 32, "DMSP Fig. 3 / §5.2", "NA+KE",
                   metric="error_ratio<3.5", note="cases with an error ratio below 3.5")]
    # --- Deep Image Prior (Ulyanov, Vedaldi & Lempitsky, IJCV 2020)
    + _series("dip-sr-set5", "dip", "scale", (4, 8), (29.89, 25.88), 5, "DIP Table 2", images=_SET5,
              per_image=((31.49, 31.80, 26.23, 31.04, 28.93), (28.28, 27.09, 20.02, 29.55, 24.50)))
    + _series("dip-sr-set5", "bicubic", "scale", (4, 8), (28.44, 24.37), 5, "DIP Table 2", images=_SET5,
              per_image=((31.78, 30.2, 22.13, 31.34, 26.75), (27.28, 25.28, 17.74, 28.82, 22.74)))
    + _series("dip-sr-set14", "dip", "scale", (4, 8), (27.00, 24.15), 14, "DIP Table 1", images=_SET14,
              per_image=((22.29, 25.53, 24.38, 25.81, 22.18, 31.02, 26.14, 31.66, 30.83, 26.09, 29.98, 32.08,
                          24.38, 25.71),
                         (21.38, 23.94, 22.20, 24.21, 19.86, 29.52, 22.86, 27.87, 27.93, 23.57, 24.86, 29.18,
                          20.12, 20.62)))
    + _series("dip-sr-set14", "bicubic", "scale", (4, 8), (26.05, 23.09), 14, "DIP Table 1", images=_SET14,
              per_image=((22.44, 25.15, 24.47, 25.53, 21.59, 31.34, 25.33, 29.45, 29.84, 25.7, 27.45, 30.63,
                          21.78, 24.01),
                         (21.28, 23.44, 22.24, 23.65, 19.25, 28.79, 22.06, 25.37, 26.27, 23.06, 23.18, 26.55,
                          18.62, 19.59)))
    + [PaperFigure("dip-denoise-cbm3d9", "dip", (), 30.43, 9, "DIP §3.1", note="1800 iterations, EMA"),
       PaperFigure("dip-denoise-cbm3d9", "dip", (), 31.00, 9, "DIP §3.1", variant="2 restarts",
                   note="1800 iterations, EMA, average of two runs"),
       PaperFigure("dip-denoise-cbm3d9", "bm3d", (), 31.42, 9, "DIP §3.1", note="CBM3D"),
       PaperFigure("dip-denoise-cbm3d9", "nlm", (), 30.26, 9, "DIP §3.1")]
    + _series("dip-inpaint-set12", "dip", "image", ("09", "10", "02", "08", "03", "01", "12", "11"),
              (32.22, 33.06, 39.16, 36.16, 33.05, 29.8, 32.52, 32.20), 1, "DIP Table 3",
              note="Barbara, Boat, House, Lena, Peppers, C.man, Couple, Man")
    # --- DeepRED (Mataev, Elad & Milanfar, ICCV-W 2019); its RED rows use TNRD/BM3D denoisers
    + [PaperFigure("deepred-denoise-cbm3d9", m, (), v, 9, "DeepRED §4.1", note=note)
       for m, v, note in (("deepred", 31.24, "NLM denoiser"), ("dip", 30.53, "their DIP run"),
                          ("red", 29.3, ""), ("nlm", 29.13, ""))]
    + _series("deepred-sr-set5", "deepred", "scale", (4, 8), (30.72, 26.04), 5, "DeepRED Table 2",
              images=_SET5, per_image=((33.08, 32.62, 26.33, 32.46, 29.11), (28.93, 27.05, 20.04, 30.06, 24.09)))
    + _series("deepred-sr-set5", "red", "scale", (4, 8), (30.23, 25.56), 5, "DeepRED Table 2",
              note="RED with BM3D", images=_SET5,
              per_image=((33.38, 32.66, 24.03, 32.62, 28.46), (28.44, 26.74, 18.96, 30.00, 23.68)))
    + _series("deepred-sr-set5", "dip", "scale", (4, 8), (29.95, 25.84), 5, "DeepRED Table 2",
              images=_SET5, per_image=((31.65, 31.90, 26.01, 31.53, 28.65), (28.36, 27.01, 20.10, 29.85, 23.89)))
    + _series("deepred-sr-set14", "deepred", "scale", (4, 8), (27.63, 24.28), 12, "DeepRED Table 3",
              note=_SET14_NOTE, images=_DEEPRED_SET14,
              per_image=((22.51, 25.76, 26.00, 22.74, 32.37, 27.29, 29.70, 31.62, 30.76, 31.10, 24.97, 26.78),
                         (21.33, 24.02, 23.98, 20.05, 29.95, 23.51, 25.38, 28.12, 25.34, 27.91, 20.69, 21.03)))
    + _series("deepred-sr-set14", "red", "scale", (4, 8), (27.36, 23.89), 12, "DeepRED Table 3",
              note=_SET14_NOTE + "; RED with BM3D", images=_DEEPRED_SET14,
              per_image=((22.55, 25.76, 25.88, 22.57, 32.60, 26.96, 29.38, 31.56, 29.33, 31.05, 24.50, 26.17),
                         (21.29, 23.94, 23.51, 19.84, 29.90, 23.19, 24.62, 27.69, 24.39, 27.45, 20.23, 20.61)))
    + _series("deepred-sr-set14", "dip", "scale", (4, 8), (27.16, 24.10), 12, "DeepRED Table 3",
              note=_SET14_NOTE, images=_DEEPRED_SET14,
              per_image=((22.21, 25.53, 25.82, 22.46, 31.48, 26.55, 29.38, 30.86, 30.27, 30.52, 24.75, 26.04),
                         (21.18, 24.01, 23.74, 19.95, 29.65, 23.32, 25.00, 27.92, 24.85, 27.99, 20.59, 20.98)))
    + _series("deepred-deblur-color", "deepred", "kernel", _DEEPRED_BLURS, (31.43, 32.51), 4,
              "DeepRED Table 4", images=_TABLE4,
              per_image=((31.44, 31.21, 32.03, 31.06), (32.19, 32.27, 32.84, 32.74)))
    + _series("deepred-deblur-color", "dip", "kernel", _DEEPRED_BLURS, (30.51, 31.62), 4,
              "DeepRED Table 4", images=_TABLE4,
              per_image=((30.26, 30.38, 31.00, 30.42), (31.21, 31.51, 31.91, 31.83)))
    + _series("deepred-deblur-color", "red", "kernel", _DEEPRED_BLURS, (30.74, 32.35), 4,
              "DeepRED Table 4", note="RED with TNRD", images=_TABLE4,
              per_image=((30.41, 30.13, 31.83, 30.57), (31.66, 31.93, 33.33, 32.49)))
    + _series("deepred-deblur-set5-gray", "deepred", "kernel", _DEEPRED_BLURS, (32.07, 33.81), 5,
              "DeepRED Table 5", images=_SET5,
              per_image=((33.11, 34.28, 29.94, 31.87, 31.14), (35.30, 37.09, 30.59, 33.22, 32.84)))
    # the 'Blurred' rows: the degraded images themselves, a check of the protocols
    + _series("deepred-deblur-color", "observation", "kernel", _DEEPRED_BLURS, (20.94, 24.43), 4,
              "DeepRED Table 4", note="Blurred row", images=_TABLE4,
              per_image=((19.07, 18.28, 23.87, 22.56), (22.81, 22.12, 26.96, 25.83)))
    + _series("deepred-deblur-set5-gray", "observation", "kernel", _DEEPRED_BLURS, (23.42, 27.09), 5,
              "DeepRED Table 5", note="Blurred row", images=_SET5,
              per_image=((26.35, 24.67, 17.75, 26.20, 22.15), (30.19, 28.87, 21.49, 29.00, 25.91)))
)


def run_variant(result: dict) -> str | None:
    """The paper row a run belongs to where a paper prints several for one method: a DMSP
    deblurring run's 'NA+KE', 'NA' or 'NB' (DMSP Table 1); a DIP run averaging k restarts,
    'k restarts' (DIP §3.1); None otherwise."""
    settings = result.get("settings", {})
    params = settings.get("method_params") or {}
    if result.get("method") == "dip" and int(params.get("restarts", 1)) > 1:
        return f"{int(params['restarts'])} restarts"
    if result.get("method") != "dmsp" or settings.get("task") != "deblur":
        return None
    if params.get("kernel_blind"):
        return "NA+KE"
    if params.get("noise_blind") or not settings.get("noise_known", True):
        return "NA"
    return "NB"


def _finished_rows(result: dict) -> list[dict]:
    return [r for r in result.get("results", []) if not r.get("interrupted") and r.get("psnr") is not None]


def paper_table(results: dict[str, dict], against: str | None = None) -> list[dict]:
    """Rows "ours vs paper" for every published figure that a results JSON can be set beside.

    ``against``: compare every run with the published rows of this method (and no variant)
    instead of its own — e.g. our DMSP on a DeepRED protocol against DeepRED's row; each row
    then names the run's own method in ``run_method``.

    ``results`` maps a name (the JSON's file name) to the loaded JSON. For each figure with
    the run's protocol, method and variant, the run's finished rows matching ``figure.where``
    give ``ours`` (mean PSNR, or the count of error ratios below 3.5) and ``n``; ``delta`` =
    ours − paper; ``partial`` when the run has fewer cases than the paper averaged. Where the
    paper prints per-image values, only the images it has count, and ``paper_same_cases`` is
    its mean over the run's images (``delta_same_cases`` = ours − that): a run on a subset is
    compared with the paper on the same subset. Without per-image values it is the paper's
    average for a complete run and None for a partial one. Runs with
    no matching figure are left out. Also returned: the run's method parameters and mean
    seconds per case over the same rows.
    """
    table = []
    for name, result in results.items():
        variant = None if against else run_variant(result)
        method = against or result.get("method")
        rows = _finished_rows(result)
        settings = result.get("settings", {})
        for fig in PAPER_FIGURES:
            if (fig.protocol, fig.method, fig.variant) != (result.get("protocol"), method, variant):
                continue
            mine = [r for r in rows if fig.matches(r)]
            per_image = dict(fig.per_image)
            if per_image:  # only the images the paper's table has (e.g. 12 of our 14 Set14 images)
                mine = [r for r in mine if r.get("image") in per_image]
            if not mine:
                continue
            if fig.metric == "psnr":
                ours = float(np.mean([r["psnr"] for r in mine]))
            else:  # 'error_ratio<3.5'
                ours = float(sum(1 for r in mine if r.get("error_ratio", math.inf) < 3.5))
            partial = len(mine) < fig.n
            # the paper on the same cases: its per-image values, or its average when ours has them all
            same = (float(np.mean([per_image[r["image"]] for r in mine])) if per_image
                    else (None if partial else fig.value))
            table.append({
                "protocol": fig.protocol, "method": fig.method, "variant": fig.variant,
                "run_method": result.get("method"),
                "cases": fig.case_label, "metric": fig.metric, "n": len(mine), "n_paper": fig.n,
                "partial": partial, "ours": ours, "paper": fig.value,
                "delta": ours - fig.value, "paper_same_cases": same,
                "delta_same_cases": None if same is None else ours - same,
                "source": fig.source, "note": fig.note,
                "seconds": float(np.mean([r["seconds"] for r in mine])),
                "params": settings.get("method_params") or {}, "file": name,
            })
    return table
