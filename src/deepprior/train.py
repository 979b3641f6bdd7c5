"""Training the denoising autoencoder (DAEP eq. 4: minimise E‖I − A_σ(I + η)‖²).

Recipe (DAEP §4.3 and DESIGN.md's CPU probes): random patches with the 8 flips/rotations,
Gaussian noise with σ drawn uniformly from the training range (one σ per patch, fed to the
network as an extra channel when the range is not a single value), residual learning with an
L2 loss, Adam (β = 0.9, 0.999) with a cosine-decayed learning rate, bf16 autocast +
channels_last when the CPU supports it. Validation uses images held aside from the training
folder with fixed noise, never a test set. Checkpoints hold the model, optimiser and every
RNG state, so ``--resume`` continues exactly where a run stopped.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .compute import environment, get_compute
from .nets.dae import DAE, FastDAE, count_parameters, load_dae, save_dae, weights_digest

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


@dataclass
class TrainConfig:
    data: str
    channels: int = 3
    sigma_range: tuple[float, float] = (0.0, 55 / 255)  # [0, 1] units
    arch: str = "unet"
    arch_kwargs: dict = field(default_factory=dict)
    steps: int = 10000
    batch: int = 32
    patch: int = 64
    lr: float = 1e-3
    lr_min: float = 1e-5
    val_count: int = 8          # images held aside from `data` when no `val` folder is given
    val: str | None = None
    val_sigmas: tuple[float, ...] = (15 / 255, 25 / 255, 50 / 255)
    val_crop: int = 192
    val_every: int = 500
    ckpt_every: int = 500
    seed: int = 0
    precision: str = "auto"
    device: str = "auto"


def list_images(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"training data folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"no images in {folder}")
    return files


def split_validation(data, val=None, val_count: int = 8) -> tuple[list[Path], list[Path]]:
    """(training files, validation files): all of ``data`` and the images of ``val``, or
    ``data`` minus every k-th image (k = len // val_count), held aside so validation spans it."""
    files = list_images(data)
    if val:
        return files, list_images(val)
    if len(files) <= val_count:
        raise ValueError(f"need more than {val_count} images in {data} to hold some aside")
    val_files = files[::len(files) // val_count][:val_count]
    return [f for f in files if f not in val_files], val_files


def evaluate_dae(weights, data, *, val=None, val_count: int = 8, sigmas=TrainConfig.val_sigmas,
                 crop: int = TrainConfig.val_crop, device: str = "auto", precision: str = "auto") -> dict:
    """Validation PSNR of DAE weight files on the images ``train-dae`` holds aside from
    ``data`` (or on ``val``), with its fixed noise and centre crop: compare DAEs, e.g. one
    fine-tuned on other data, on the same images. Channels come from the weights."""
    compute = get_compute(device, precision)
    _, val_files = split_validation(data, val, val_count)
    rows, sets = [], {}
    for w in weights:
        dae = load_dae(w)
        if dae.channels not in sets:
            sets[dae.channels] = make_validation_set(load_uint8(val_files, dae.channels), sigmas, crop)
        rows.append({"weights": str(w), "sha256": weights_digest(w), "channels": dae.channels,
                     "val_psnr": validate(dae, sets[dae.channels], compute)})
    return {"protocol": "dae-validation", "data": str(data), "validation": [f.name for f in val_files],
            "validation_protocol": f"centre crop {crop}, fixed Gaussian noise (seed 1234), PSNR on "
                                   "float images, no border crop", "environment": environment(),
            "precision": compute.precision, "results": rows}


def load_uint8(files: list[Path], channels: int) -> list[torch.Tensor]:
    """Images as C×H×W uint8 tensors (keeps CBSD432 at ~70 MB in memory)."""
    from .io import read_image

    out = []
    for f in files:
        px = read_image(f).pixels
        if channels == 1 and px.shape[2] == 3:
            px = px @ np.array([0.299, 0.587, 0.114], dtype=np.float32)[:, None]
        elif channels == 3 and px.shape[2] == 1:
            px = np.repeat(px, 3, axis=2)
        out.append(torch.from_numpy(np.round(px * 255).astype(np.uint8)).permute(2, 0, 1).contiguous())
    return out


def sample_batch(images: list[torch.Tensor], batch: int, patch: int, sigma_range, g: torch.Generator):
    """Random patches with a random dihedral transform, plus per-patch σ and noisy versions."""
    clean = torch.empty(batch, images[0].shape[0], patch, patch)
    idx = torch.randint(len(images), (batch,), generator=g)
    for b, i in enumerate(idx.tolist()):
        img = images[i]
        h, w = img.shape[-2:]
        r = int(torch.randint(h - patch + 1, (1,), generator=g))
        c = int(torch.randint(w - patch + 1, (1,), generator=g))
        p = img[:, r:r + patch, c:c + patch].float() / 255
        k = int(torch.randint(8, (1,), generator=g))
        p = torch.rot90(p, k % 4, dims=(1, 2))
        clean[b] = p.flip(2) if k >= 4 else p
    lo, hi = sigma_range
    sigma = lo + (hi - lo) * torch.rand(batch, generator=g)
    noisy = clean + sigma.view(-1, 1, 1, 1) * torch.randn(clean.shape, generator=g)
    return clean, noisy, sigma


def make_validation_set(images: list[torch.Tensor], sigmas, crop: int, seed: int = 1234):
    """Fixed (clean, noisy, σ) triples: a centre crop per image, noise drawn once."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for img in images:
        h, w = img.shape[-2:]
        ch, cw = min(crop, h), min(crop, w)
        r, c = (h - ch) // 2, (w - cw) // 2
        clean = img[None, :, r:r + ch, c:c + cw].float() / 255
        for s in sigmas:
            out.append((clean, clean + s * torch.randn(clean.shape, generator=g), float(s)))
    return out


def validate(dae: DAE, valset, compute) -> dict[str, float]:
    """Mean PSNR (RGB, float, no crop) per validation σ, in 8-bit σ units as keys."""
    fast = FastDAE(dae, compute)
    per_sigma: dict[str, list[float]] = {}
    with torch.no_grad():
        for clean, noisy, s in valset:
            den = fast(noisy, s).clamp(0, 1)
            mse = torch.mean((den - clean) ** 2).item()
            per_sigma.setdefault(f"{s * 255:g}", []).append(10 * math.log10(1 / max(mse, 1e-12)))
    return {k: float(np.mean(v)) for k, v in per_sigma.items()}


def _lr_at(cfg: TrainConfig, step: int) -> float:
    """Cosine decay from lr to lr_min over the run (Adam's rate "reduced during the
    iterations", DAEP §4.3)."""
    frac = min(step / max(cfg.steps, 1), 1.0)
    return cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * frac))


def train_dae(cfg: TrainConfig, out: str | Path, *, resume: str | Path | None = None,
              init: str | Path | None = None, checkpoint: str | Path | None = None,
              stop_at: int | None = None, progress: bool = True, log=print) -> DAE:
    """Train a DAE per ``cfg``; writes ``out`` (.safetensors + .json card) at the end.

    ``checkpoint`` (default ``out`` with suffix ``.ckpt``) is written every ``ckpt_every`` steps;
    ``resume`` loads one and continues with identical RNG streams. ``init`` starts from the
    weights of a finished DAE (.safetensors, same architecture, channels and σ range) with a
    fresh optimiser and learning-rate schedule: a second training run that continues the
    first; the card records the parent's steps and time. ``stop_at`` ends this invocation at
    that step (checkpoint written, no weights) — e.g. to fit a time slot.
    """
    out = Path(out)
    checkpoint = Path(checkpoint) if checkpoint else out.with_suffix(".ckpt")
    compute = get_compute(cfg.device, cfg.precision)
    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)

    train_files, val_files = split_validation(cfg.data, cfg.val, cfg.val_count)
    train_images = load_uint8(train_files, cfg.channels)
    if min(min(t.shape[-2:]) for t in train_images) < cfg.patch:
        raise ValueError(f"patch {cfg.patch} is larger than a training image")
    valset = make_validation_set(load_uint8(val_files, cfg.channels), cfg.val_sigmas, cfg.val_crop)

    dae = DAE(cfg.arch, cfg.channels, cfg.sigma_range, **cfg.arch_kwargs).to(compute.device)
    dae = dae.to(memory_format=compute.memory_format)
    opt = torch.optim.Adam(dae.parameters(), lr=cfg.lr, betas=(0.9, 0.999))
    step, curve, seconds, changes = 0, [], 0.0, []
    parent = None
    if init and not resume:
        parent_dae = load_dae(init)
        if parent_dae.config() != dae.config():
            raise ValueError(f"--init {init} is a {parent_dae.config()} DAE; this run trains "
                             f"{dae.config()} (architecture, channels and σ range must match)")
        dae.load_state_dict(parent_dae.state_dict())
        pc = parent_dae.card
        # the whole lineage: each stage's data, own steps and learning rate, its parent nested
        parent = {"weights": Path(init).name, "steps": pc.get("total_steps", pc.get("steps")),
                  "wall_seconds": pc.get("total_wall_seconds", pc.get("wall_seconds")),
                  "validation_psnr": pc.get("validation_psnr"),
                  "data": (pc.get("data") or {}).get("train"), "stage_steps": pc.get("steps"),
                  "stage_lr": (pc.get("recipe") or {}).get("lr"), "init": pc.get("init")}
        log(f"starting from {init} ({parent['steps']} steps)")
    if resume:
        state = torch.load(resume, map_location=compute.device, weights_only=True)
        dae.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        g.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        step, curve, seconds = state["step"], json.loads(state["curve"]), state["seconds"]
        parent = json.loads(state.get("parent", "null"))
        changes = json.loads(state.get("changes", "[]"))
        old = json.loads(state["config"])
        diff = {k: [old.get(k), v] for k, v in json.loads(json.dumps(asdict(cfg))).items() if old.get(k) != v}
        if diff:  # e.g. a shortened schedule to fit a time slot: recorded in the model card
            changes.append({"at_step": step, "changed": diff})
        log(f"resumed from {resume} at step {step}" + (f"; changed {diff}" if diff else ""))

    def save_checkpoint():
        tmp = checkpoint.with_suffix(".ckpt.tmp")
        torch.save({"model": dae.state_dict(), "optimizer": opt.state_dict(), "generator": g.get_state(),
                    "torch_rng": torch.get_rng_state(), "step": step, "curve": json.dumps(curve),
                    "seconds": seconds, "config": json.dumps(asdict(cfg)), "changes": json.dumps(changes),
                    "parent": json.dumps(parent)}, tmp)
        tmp.replace(checkpoint)

    log(f"training {cfg.arch} DAE ({count_parameters(dae)} parameters, {cfg.channels} channels, "
        f"σ∈[{cfg.sigma_range[0] * 255:g}, {cfg.sigma_range[1] * 255:g}]) on {len(train_images)} images, "
        f"validating on {len(val_files)}; {compute.precision} on {compute.device}")
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.steps, initial=step, dynamic_ncols=True, desc="train-dae")
    # Per-patch loss weight (25/255)²/max(σ, 2/255)²: equalises the σ range in dB terms so the
    # small σ that DMSP (11) and DeepRED (3–5) use is learned as well as large σ.
    sigma_floor = 2 / 255
    t_last = time.perf_counter()
    dae.train()
    end = min(cfg.steps, stop_at) if stop_at else cfg.steps
    while step < end:
        for group in opt.param_groups:
            group["lr"] = _lr_at(cfg, step)
        clean, noisy, sigma = sample_batch(train_images, cfg.batch, cfg.patch, cfg.sigma_range, g)
        noisy = compute.prepare_input(noisy)
        target = (noisy - clean.to(compute.device)).float()
        with compute.autocast():
            pred = dae.noise(noisy, sigma.to(compute.device))
        weight = (25 / 255) ** 2 / sigma.clamp_min(sigma_floor).to(compute.device) ** 2
        loss = (((pred.float() - target) ** 2).mean(dim=(1, 2, 3)) * weight).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        now = time.perf_counter()
        seconds += now - t_last
        t_last = now
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3e}", refresh=False)
        if step % cfg.val_every == 0 or step == cfg.steps:
            dae.eval()
            val = validate(dae, valset, compute)
            dae.train()
            curve.append({"step": step, "seconds": round(seconds, 1), "loss": float(loss.item()),
                          "val_psnr": val})
            log(f"step {step}: loss {loss.item():.4e}, val PSNR " +
                ", ".join(f"σ={k}: {v:.2f}" for k, v in val.items()) + f" ({seconds / 60:.1f} min)")
            t_last = time.perf_counter()
        if step % cfg.ckpt_every == 0 or step == end:
            save_checkpoint()
            t_last = time.perf_counter()
    if bar is not None:
        bar.close()
    if step < cfg.steps:
        log(f"stopped at step {step} of {cfg.steps}; continue with resume={checkpoint}")
        return dae.eval()
    dae.eval()
    card = {
        "architecture": dae.config(),
        "parameters": count_parameters(dae),
        "sigma_range_8bit": [cfg.sigma_range[0] * 255, cfg.sigma_range[1] * 255],
        "data": {"train": str(cfg.data), "train_images": len(train_images),
                 "validation": [f.name for f in val_files]},
        "recipe": {k: v for k, v in asdict(cfg).items() if k not in ("data", "val")},
        "steps": step, "wall_seconds": round(seconds, 1), "config_changes_on_resume": changes,
        "validation_psnr": curve[-1]["val_psnr"] if curve else None,
        "validation_protocol": f"{len(val_files)} held-aside images, centre crop {cfg.val_crop}, "
                               "fixed Gaussian noise, RGB PSNR on float images, no border crop",
        "curve": curve,
        "environment": environment(),
    }
    if parent is not None:
        card.update(init=parent, total_steps=(parent["steps"] or 0) + step,
                    total_wall_seconds=round((parent["wall_seconds"] or 0) + seconds, 1))
    dae.card = card
    out.parent.mkdir(parents=True, exist_ok=True)
    save_dae(dae, out, card)
    return dae


def dae_from_checkpoint(checkpoint: str | Path) -> DAE:
    """The (possibly unfinished) network stored in a training checkpoint."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    cfg = json.loads(state["config"])
    dae = DAE(cfg["arch"], cfg["channels"], tuple(cfg["sigma_range"]), **cfg["arch_kwargs"])
    dae.load_state_dict(state["model"])
    dae.card = {"checkpoint": str(checkpoint), "step": state["step"]}
    return dae.eval()


def plot_training_curve(card: dict, png: str | Path, title: str = "") -> None:
    """Validation PSNR vs steps (one line per validation σ) from a model card's ``curve``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = card["curve"]
    steps = [c["step"] for c in curve]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    for sigma in curve[-1]["val_psnr"]:
        ax.plot(steps, [c["val_psnr"][sigma] for c in curve], marker="o", ms=3, label=f"σ = {sigma}")
    ax.set_xlabel("training step (batch 32 × 64²)")
    ax.set_ylabel("validation PSNR (dB)")
    ax.set_title(title or f"DAE training curve ({card.get('wall_seconds', 0) / 60:.0f} CPU-minutes)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)
