"""``python -m preciseinv.learn_init``'s data: the steps of finished preciseinv inversions, read back from the
latent files of ordinary fit runs.

A latent file of method=preciseinv holds ``x0``, the intermediate solutions ``state_<k>`` (x*_k, k = 1 .. T-1)
and x*_T (``latent``), so each step k = 1 .. T of each image gives one pair: the state the step inverts from,
x*_{k-1} (x0 for k = 1), and its solution x*_k. Files written before latent files kept x0 and the states, and files
of other methods, are skipped (one line says how many); files of more than one model, sampler, schedule or state
shape are refused in one line.

The DDIM start of every pair (one network call) and its residual (one more) are computed once, in
``prepare_data``, and cached in ``<output_dir>/pairs.pt``, which every rank, every epoch and a resumed training
read. Steps the DDIM start already solves (residual below the run's eta) teach nothing: training and validation
use the others (``hard``). The pairs are split by image into training and validation (``val_fraction``, seeded);
every pair of a validation image, solved by the DDIM start or not, is what ``preciseinv.inits.judge`` solves.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from preciseinv.errors import PreciseInvError

CACHE_VERSION = 4


class Scan:
    """The usable latent files of the runs, the identity of the model they were inverted with, one file's metadata
    (the config that rebuilds that model and sampler), and how many files were skipped and why. (A plain class:
    handed to constructors through ``instantiate``, which would turn a dict or a dataclass into a config.)"""

    def __init__(self, files: list[Path], identity: dict, meta: dict, skipped: dict[str, int]):
        self.files, self.identity, self.meta, self.skipped = files, identity, meta, skipped

    def skipped_line(self) -> str | None:
        if not self.skipped:
            return None
        why = "; ".join(f"{n} {reason}" for reason, n in self.skipped.items())
        return f"preciseinv: skipped {sum(self.skipped.values())} latent file(s): {why}"


def _header(path: Path) -> tuple[dict, dict[str, list[int]]]:
    """(metadata, {tensor name: shape}) of a latent file, without reading its tensors."""
    from safetensors import safe_open

    from preciseinv.outputs.latents import FORMAT

    with safe_open(str(path), framework="pt") as f:
        header = f.metadata() or {}
        if header.get("format") != FORMAT:
            raise ValueError(f"format {header.get('format')!r}")
        return json.loads(header["preciseinv"]), {k: list(f.get_slice(k).get_shape()) for k in f.keys()}


def scan_runs(runs) -> Scan:
    """Every usable latent file under the ``latents/`` of each run folder; mistakes are one line."""
    from preciseinv.inits.learned import identity, mismatches

    runs = [runs] if isinstance(runs, (str, Path)) else list(runs or [])
    if not runs:
        raise PreciseInvError("no runs given: runs=[DIR,...] names the output_dir of finished fit runs "
                              "(method=preciseinv) to learn from")
    files, skipped, first = [], {}, None

    def skip(reason: str) -> None:
        skipped[reason] = skipped.get(reason, 0) + 1

    for run in runs:
        folder = Path(str(run)).expanduser()
        if not (folder / "latents").is_dir() and (folder / "shards").is_dir():
            raise PreciseInvError(f"runs: {str(folder)!r} was written with writer=webdataset (shards/): learn_init "
                                  "reads latent files; invert the images it learns from with writer=files")
        if not (folder / "latents").is_dir():
            raise PreciseInvError(f"runs: {str(folder)!r} is not the output_dir of a fit run (no latents/ folder)")
        for path in sorted((folder / "latents").rglob("*.safetensors")):
            try:
                meta, shapes = _header(path)
            except Exception:  # a foreign or torn file: not one of ours to learn from
                skip("unreadable")
                continue
            T = int(meta.get("num_steps", 0))
            if meta.get("method") != "preciseinv":
                skip(f"of method={meta.get('method')}")
                continue
            if "x0" not in shapes or any(f"state_{k}" not in shapes for k in range(1, T)):
                skip("without x0 and the intermediate states (written before latent files kept them)")
                continue
            found = identity(meta["model"], meta.get("sampler"), meta["schedule"]["timesteps"], shapes["latent"])
            if first is None:
                first = (path, found, meta)
            wrong = mismatches(first[1], found)
            if wrong:
                raise PreciseInvError(f"runs mix models or schedules, a predictor serves one: {str(first[0])!r} and "
                                      f"{str(path)!r} differ ({'; '.join(wrong)}); learn from the runs of one model")
            files.append(path)
    if first is None:
        why = "; ".join(f"{n} {reason}" for reason, n in skipped.items()) or "no latent files"
        raise PreciseInvError(f"nothing to learn from in {', '.join(map(str, runs))} ({why}): invert images with "
                              "method=preciseinv first (python -m preciseinv.fit output_dir=DIR)")
    return Scan(files, first[1], first[2], skipped)


def split_images(images: list[int], val_fraction: float, seed: int) -> set[int]:
    """The validation images: a seeded draw of ``val_fraction`` of ``images`` (two or more), at least one, and at
    least one left for training."""
    distinct = sorted(set(images))
    n_val = min(len(distinct) - 1, max(1, round(val_fraction * len(distinct))))
    order = torch.randperm(len(distinct), generator=torch.Generator().manual_seed(seed)).tolist()
    return {distinct[i] for i in order[:n_val]}


class Pairs(Dataset):
    """Rows of the cached tensors: one dict per (image, step)."""

    def __init__(self, cache: dict, rows: torch.Tensor):
        self.cache, self.rows = cache, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        j = int(self.rows[i])
        item = {key: self.cache[key][j] for key in ("x0", "x_prev", "eps_ddim", "r_ddim", "k")}  # (C, h, w) or ()
        item["prompt"] = self.cache["prompts"][int(self.cache["image"][j])]
        return item


class InversionPairsDataModule(LightningDataModule):
    def __init__(self, scan: Scan, cache: str, val_fraction: float = 0.1, batch_size: int = 32,
                 num_workers: int = 0, seed: int = 0, device: str | None = None):
        super().__init__()
        if not 0 < val_fraction < 1:
            raise PreciseInvError(f"data.val_fraction must be in (0, 1), got {val_fraction}: the held-out residual is "
                                  "what checkpointing and early stopping watch")
        self.scan, self.cache_path = scan, Path(cache)
        self.val_fraction, self.batch_size, self.num_workers, self.seed = val_fraction, batch_size, num_workers, seed
        self.device = device  # where the DDIM starts are computed (None: cuda when available)
        self.pairs: dict | None = None
        self.train_rows = self.val_rows = self.held_out_rows = None

    def _fingerprint(self) -> list:
        return [CACHE_VERSION, [(str(p), p.stat().st_size) for p in self.scan.files]]

    def prepare_data(self) -> None:
        """Once per machine (local rank 0): the pairs, their DDIM starts and residuals, into the cache file."""
        if self.cache_path.is_file() and torch.load(self.cache_path, mmap=True)["fingerprint"] == self._fingerprint():
            return
        from preciseinv.outputs.atomic import atomic_write

        pairs = build_pairs(self.scan, self.device)
        pairs["fingerprint"] = self._fingerprint()
        with atomic_write(self.cache_path) as tmp:
            torch.save(pairs, tmp)

    def setup(self, stage: str) -> None:
        if self.pairs is not None:
            return
        self.pairs = torch.load(self.cache_path, mmap=True)
        images, hard = self.pairs["image"], self.pairs["hard"]  # (N,) which image each pair belongs to; (N,) bool
        if len(images[hard].unique()) < 2:
            raise PreciseInvError("learn_init needs the inversions of at least two images with a step the DDIM start "
                                  "does not solve (one is held out for validation): invert more images first")
        val = split_images([int(i) for i in images[hard].unique()], self.val_fraction, self.seed)
        is_val = torch.tensor([int(i) in val for i in images], dtype=torch.bool)
        self.train_rows, self.val_rows = (hard & ~is_val).nonzero().squeeze(1), (hard & is_val).nonzero().squeeze(1)
        self.held_out_rows = is_val.nonzero().squeeze(1)  # every pair of the validation images: what the judge solves

    @property
    def steps(self) -> list[int]:
        """The steps k (0 = t_1) that have training pairs: where some DDIM start did not meet eta."""
        return sorted(int(k) for k in self.pairs["k"][self.pairs["hard"]].unique())

    @property
    def counts(self) -> dict:
        """Images and pairs on each side of the split, and the steps left out because their DDIM start solves them."""
        val = set(int(self.pairs["image"][i]) for i in self.val_rows)
        return {"images": len(self.pairs["images"]), "val_images": len(val), "train_pairs": len(self.train_rows),
                "val_pairs": len(self.val_rows), "solved_by_ddim": int(self.pairs["solved_by_ddim"]),
                "above_unsolved": int(self.pairs.get("above_unsolved", 0)),
                "repeated": int(self.pairs.get("repeated", 0))}

    def train_dataloader(self) -> DataLoader:
        return DataLoader(Pairs(self.pairs, self.train_rows), batch_size=self.batch_size, shuffle=True,
                          num_workers=self.num_workers, drop_last=len(self.train_rows) > self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(Pairs(self.pairs, self.val_rows), batch_size=self.batch_size, shuffle=False,
                          num_workers=self.num_workers)


@torch.no_grad()
def build_pairs(scan: Scan, device: str | None = None, batch_size: int = 64) -> dict:
    """Every step of the scanned files that its DDIM start does not already solve (residual >= the run's eta), as
    tensors, each (N, ...): x0, the state below (``x_prev``), the DDIM start's noise and residual, the step's index
    ``k``, the image it belongs to (an index into ``images`` and ``prompts``) and whether the DDIM start leaves it
    unsolved (``hard``: the pairs trained on). A step above one the run left unsolved (residual >= eta) is left
    out: the state below it is not a solution, and can be far from any (``above_unsolved`` counts them)."""
    from preciseinv.builder import build_engine, file_config, instantiate
    from preciseinv.inits.base import injected_noise
    from preciseinv.outputs.latents import load_latent

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    cfg = file_config(scan.meta)
    engine = build_engine(cfg, instantiate(cfg.model).load(device))
    sampler, model = engine.sampler, engine.model
    x0, x_prev, k, image, eta = [], [], [], [], []
    images, prompts, unsolved, seen, repeated = [], [], 0, set(), 0
    for path in scan.files:
        tensors, meta = load_latent(path)
        # the image (the held-out split is by image) and its prompt, however many of the runs hold it: by the image
        # file's checksum where the run recorded it (one picture under two paths), else by its path
        picture = (meta.get("source_file") or {}).get("sha256") or meta.get("source") or str(path)
        key = (picture, meta.get("prompt", ""))
        if key in seen:  # inverted by another of these runs too: learned from once, never on both sides of the split
            repeated += 1
            continue
        seen.add(key)
        T = int(meta["num_steps"])
        states = [tensors["x0"]] + [tensors[f"state_{j}"] for j in range(1, T)]  # x*_0 .. x*_{T-1}
        images.append(key[0])
        prompts.append(key[1])
        residuals = meta.get("residual") or [0.0] * T  # per step, what the run's solver reached
        for j in range(T):
            if j > 0 and not residuals[j - 1] < float(meta.get("eta", 0.0)):  # the state below is no solution:
                unsolved += 1  # not a state a run inverts from (and an unsolved step can leave it far off)
                continue
            x0.append(tensors["x0"])
            x_prev.append(states[j])
            k.append(j)
            image.append(len(images) - 1)
            eta.append(float(meta.get("eta", 0.0)))
    x0, x_prev = torch.stack(x0), torch.stack(x_prev)  # (N, C, h, w)
    k, image, eta = torch.tensor(k), torch.tensor(image), torch.tensor(eta)  # (N,)
    eps_ddim, r_ddim = torch.empty_like(x0), torch.empty(len(k))
    for lo in range(0, len(k), batch_size):
        for step in k[lo:lo + batch_size].unique().tolist():  # the sampler takes one step at a time
            idx = lo + (k[lo:lo + batch_size] == step).nonzero().squeeze(1)
            a, b = x0[idx].to(device), x_prev[idx].to(device)  # (b, C, h, w)
            cond = engine.condition([prompts[int(i)] for i in image[idx]], len(idx))
            z = injected_noise(sampler, a, b, step)  # (b, C, h, w) lcm, ddpm; else None
            x_ddim = sampler.invert_step(model.predict, b, step, cond)
            eps_ddim[idx] = sampler.noise(a, x_ddim, step).cpu()
            r_ddim[idx] = (sampler.denoise(model.predict, x_ddim, step, cond, z) - b).pow(2).flatten(1).mean(1).cpu()
    hard = ~(r_ddim < eta)  # (N,) a step its DDIM start already solves teaches nothing (but the judge counts it)
    if not hard.any():
        raise PreciseInvError(f"the DDIM start already solves every step of the {len(scan.files)} inversion(s) in "
                              "these runs: init=ddim is as good as a learned start can be")
    return {"x0": x0, "x_prev": x_prev, "eps_ddim": eps_ddim, "r_ddim": r_ddim, "k": k, "image": image, "hard": hard,
            "images": images, "prompts": prompts, "solved_by_ddim": int((~hard).sum()), "above_unsolved": unsolved,
            "repeated": repeated}
