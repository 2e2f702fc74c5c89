"""The trainer: one curriculum stage of HuMo training, from a config to checkpoints and an EMA export.

    cfg = load_config("cfg.json", ["stage=2"])
    summary = train(cfg)        # also under torchrun: each process runs the same call

Order of a run: process group -> cached data -> DiT (preset + init weights) -> trainable set (minimal /
full / LoRA) -> EMA + AdamW -> resume from the latest checkpoint -> DDP -> the stage's sample stream -> steps ->
``OUT/final/ema.safetensors`` (`humo.checkpoint.save_dit` layout: loads with `load_dit` and `humo generate`).

Each optimiser step takes ``grad_accum`` micro-batches. Each sample's timestep, noise and dropout decisions come
from a generator seeded by (seed, micro-batch number, row of the global batch), so a process draws only its own
rows, the update does not depend on how the global batch is split across processes, and a resumed run needs no
generator state. Everything random is a pure function of (seed, position) or restored from the checkpoint (the
global torch/numpy/python RNGs, used e.g. by LoRA dropout): a resumed run repeats the uninterrupted run's losses.
"""

from __future__ import annotations

import json
import math
import os
import time
from contextlib import nullcontext
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from humo.constants import CONTINUATION_MIN_LATENTS
from humo.errors import HumoError, atomic_path, check_keys
from humo.training.config import STRUCTURAL_FIELDS, TrainConfig
from humo.training.curriculum import (
    TASK_USES,
    TaskBatchSampler,
    check_pools,
    stage_for,
    task_pools,
    task_probabilities,
)
from humo.training.distributed import DistInfo, all_mean, barrier, init_distributed, shutdown, wrap_model
from humo.training.ema import EMA
from humo.training.objective import compute_loss, draw_rows, keep_ratios
from humo.training.state import capture_rng, latest_checkpoint, load_checkpoint, restore_rng, save_checkpoint
from humo.training.trainable import (
    AUDIO,
    MASK_HEAD,
    POSE,
    apply_lora,
    lora_scaling,
    merge_lora,
    set_trainable,
    trainable_names,
    zero_audio_output,
)

LOG_FILE = "log.jsonl"
FINAL_DIR = "final"
EXPORT_FILE = "ema.safetensors"
# Test aid: seconds to sleep after each step, so a test can SIGKILL a run between two checkpoints.
STEP_SLEEP_ENV = "HUMO_TRAIN_STEP_SLEEP"


# ----------------------------------------------------------------------------------------------------------------
# Model


def build_dit_config(cfg: TrainConfig):
    """The DiTConfig of the run: the preset, the overrides, and mask_head_blocks=0 when the mask head is off."""
    from humo.configs import dit_preset

    overrides = dict(cfg.model_overrides)
    if not cfg.mask_head:
        overrides["mask_head_blocks"] = 0
    return dit_preset(cfg.model, **overrides)


def load_init(model: torch.nn.Module, path: str) -> list[str]:
    """Load starting weights into `model` -> the names of parameters left at their fresh initialisation.

    `path`: an export (``final/ema.safetensors``), a released checkpoint (any format `humo.checkpoint` reads), or
    a training checkpoint folder (its ``model.safetensors``). Only the modules a stage adds may be absent (the
    audio path, the mask head and the pose guider, e.g. starting from a Wan backbone, a run without the head, or a
    HuMo model that gets a pose guider: its zero-initialised embedding leaves the model unchanged); mask-head
    weights are dropped when this model has no head. Any other missing, unexpected or misshaped key is an error.
    """
    from humo.checkpoint import from_diffusers_keys, is_diffusers_layout, read_state_dict

    p = Path(path)
    if p.is_dir() and (p / "model.safetensors").is_file():
        p = p / "model.safetensors"
    sd, _ = read_state_dict(p)
    if any(".lora_" in k or ".base_layer." in k for k in sd):
        raise HumoError(f"init {p}: holds LoRA adapters; start from that run's export ({FINAL_DIR}/{EXPORT_FILE})")
    if is_diffusers_layout(sd):
        sd = from_diffusers_keys(sd)
    own = model.state_dict()
    # a mask head (face or persons) this model is built without is dropped
    sd = {k: v for k, v in sd.items() if not (MASK_HEAD.match(k) and k not in own)}
    check_keys(
        f"init {p}: does not fit the model",
        sd,
        own,
        may_miss=lambda k: AUDIO.match(k) or MASK_HEAD.match(k) or POSE.match(k),
    )
    missing = sorted(set(own) - set(sd))
    model.load_state_dict(sd, strict=False)
    return missing


def param_groups(params: dict[str, torch.nn.Parameter], weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: weight decay on matrices, none on biases, norms and modulation vectors."""
    decay, plain = [], []
    for name, p in params.items():
        no_decay = p.ndim < 2 or name.endswith(".bias") or "norm" in name or "modulation" in name
        (plain if no_decay else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0}]


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate for optimiser step `step` (0-based): linear warm-up, then constant or cosine to 0."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "cosine":
        span = max(1, cfg.steps - cfg.warmup_steps)
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - cfg.warmup_steps) / span)))
    return cfg.lr


# ----------------------------------------------------------------------------------------------------------------
# Training state, the same way for one process, DDP and FSDP


def _full(t: torch.Tensor) -> torch.Tensor:
    """A DTensor shard -> the whole tensor (a collective: every process calls it); plain tensors pass."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def full_model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The whole model state dict on the CPU (copies), gathered from every process when sharded."""
    return {k: _full(v.detach()).cpu().clone() for k, v in model.state_dict().items()}


def gather_training_state(model, optimizer, ema: EMA) -> tuple[dict, dict, dict]:
    """(model, optimizer, EMA) states as whole tensors keyed by parameter name; every process must call this.

    The optimizer state is torch.distributed.checkpoint's name-keyed layout, the same for one process, DDP and
    FSDP, so a checkpoint does not depend on how it was sharded.
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    optim = get_optimizer_state_dict(model, optimizer, options=options)
    ema_sd = {k: _full(v).cpu() for k, v in ema.state_dict().items()}
    return full_model_state(model), optim, ema_sd


def load_training_state(model, optimizer, ema: EMA, ck: dict[str, Any], source: str) -> None:
    """Put whole-tensor states from `gather_training_state` back into a (possibly sharded) model, optimizer, EMA."""
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True)
    set_model_state_dict(model, ck["model"], options=options)
    # strict=False: a parameter that never received a gradient has no AdamW state yet, in either run.
    set_optimizer_state_dict(
        model, optimizer, ck["optimizer"], options=StateDictOptions(full_state_dict=True, strict=False)
    )
    shards = {}
    for k, v in ck["ema"].items():
        own = ema.shadow.get(k)
        if own is not None and hasattr(own, "device_mesh"):
            from torch.distributed.tensor import distribute_tensor

            v = distribute_tensor(v.to(own.device, own.dtype), own.device_mesh, own.placements)
        shards[k] = v
    ema.load_state_dict(shards, f"{source}: EMA")


# ----------------------------------------------------------------------------------------------------------------
# Logging


class RunLog:
    """JSONL records (rank 0), TensorBoard scalars when available, a tqdm bar with loss and samples/s."""

    def __init__(self, cfg: TrainConfig, info: DistInfo, start_step: int):
        self.enabled = info.is_main
        self.path = Path(cfg.out) / LOG_FILE
        self.writer = None
        self.bar = None
        if not self.enabled:
            return
        Path(cfg.out).mkdir(parents=True, exist_ok=True)
        # A resumed run rewrites the records the killed run made after its checkpoint.
        if self.path.is_file():
            kept = [
                line for line in self.path.read_text().splitlines() if line and json.loads(line)["step"] <= start_step
            ]
            with atomic_path(self.path) as tmp:
                tmp.write_text("".join(line + "\n" for line in kept))
        if cfg.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(Path(cfg.out) / "tensorboard"), purge_step=start_step or None)
            except ImportError:
                self.writer = None
        if cfg.progress:
            from tqdm import tqdm

            self.bar = tqdm(total=cfg.steps, initial=start_step, desc=f"stage {cfg.stage}", dynamic_ncols=True)

    def record(self, rec: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")
        if self.writer is not None:
            for k, v in rec.items():
                if k != "step" and isinstance(v, (int, float)):
                    self.writer.add_scalar(f"train/{k}", v, rec["step"])
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{rec['loss']:.4f}", sps=f"{rec['samples_per_s']:.1f}")

    def advance(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()


# ----------------------------------------------------------------------------------------------------------------
# The trainer


class Trainer:
    """One stage of training (see the module docstring). `run()` trains to ``cfg.steps`` and exports."""

    def __init__(self, cfg: TrainConfig):
        from humo.data.loader import CachedDataset, LatentCache
        from humo.dit import HumoDiT

        self.cfg = cfg
        self.info = info = init_distributed(cfg.device)
        self.device = info.device
        self.stage = stage = stage_for(cfg)
        self.dit_cfg = dcfg = build_dit_config(cfg)
        self.mask_weight = cfg.mask_loss_weight if (stage.mask and cfg.mask_head) else 0.0
        # a pose guider learns where the stage's tasks use poses at a ratio above 0 (the samples that have one feed it)
        self.uses_pose = (
            bool(dcfg.pose_channels)
            and any("pose" in TASK_USES[t] for t in stage.tasks)
            and keep_ratios(cfg)["pose"] > 0
        )
        if cfg.pose_loss_weight and not self.uses_pose:
            raise HumoError(
                f"pose_loss_weight {cfg.pose_loss_weight:g}: needs the clips' poses, which this stage reads only for a "
                "DiT with a pose guider (model_overrides.pose_channels) whose tasks use poses at a pose ratio above 0"
            )
        # several people: their audio goes where their regions are once the audio path runs; the predictor learns
        self.persons = cfg.persons and stage.audio
        self.person_weight = cfg.person_mask_weight if (self.persons and dcfg.person_mask_blocks) else 0.0
        self._check_model(dcfg)

        # -- data
        if not cfg.cache:
            raise HumoError("train config: cache is not set (the folder written by humo precompute)")
        self.cache = LatentCache(cfg.cache, cfg.index)
        self._check_dims(self.cache.dims)
        self.num_refs = cfg.num_refs if stage.references else 0
        self.dataset = CachedDataset(
            self.cache,
            split=cfg.split,
            num_refs=self.num_refs,
            references=stage.references,
            audio=stage.audio,
            masks=self.mask_weight > 0 or cfg.face_loss_weight > 0 or cfg.person_face_weight > 0,
            zero_video=dcfg.reference_mode == "concat",
            pose=self.uses_pose,
            persons=self.persons,
            reference_crops=cfg.reference_crops,
            seed=cfg.seed,
        )
        self.null_text = self.cache.null_text(cfg.null_text).to(self.device)

        # -- model
        self.resume_from = self._resume_path()
        torch.manual_seed(cfg.seed)
        model = HumoDiT(dcfg)
        fresh = [k for k, _ in model.named_parameters()]
        if cfg.init and self.resume_from is None:
            fresh = load_init(model, cfg.init)
        if cfg.zero_init_audio and dcfg.audio:
            # An audio branch that has never trained starts as the identity (x + 0) once it is switched on.
            if stage.index < 2 or any(AUDIO.match(k) for k in fresh):
                zero_audio_output(model)
        mode = cfg.trainable or stage.trainable
        if cfg.lora_rank:
            if mode != "minimal":
                raise HumoError("train config: LoRA (lora_rank > 0) adapts the minimal set; set trainable=minimal")
            apply_lora(model, cfg.lora_rank, cfg.lora_alpha, cfg.lora_dropout)
        set_trainable(
            model,
            trainable_names(
                model, mode, audio=stage.audio, mask=self.mask_weight > 0 or self.person_weight > 0, pose=self.uses_pose
            ),
        )
        model.gradient_checkpointing = cfg.gradient_checkpointing
        self.model = model.to(self.device)
        # Wrap before the optimiser and the EMA see the parameters: FSDP replaces them by sharded ones.
        self.ddp_model = wrap_model(self.model, info, cfg.distributed)
        self.params = {n: p for n, p in self.model.named_parameters() if p.requires_grad}
        self.ema = EMA(self.params, cfg.ema_decay)
        self.optimizer = torch.optim.AdamW(
            param_groups(self.params, cfg.weight_decay), lr=cfg.lr, betas=tuple(cfg.adam_betas), eps=cfg.adam_eps
        )
        self.step, self.micro = 0, 0
        if self.resume_from is not None:
            self._resume(self.resume_from)

        # -- sample stream
        pools = task_pools(self.dataset.availability(), stage.tasks)
        check_pools(pools, {t: 1.0 for t in stage.tasks}, stage)
        if self.uses_pose and not any(a["pose"] for a in self.dataset.availability()):
            raise HumoError(
                f"training data: the pose guider trains at pose ratio {keep_ratios(cfg)['pose']:g}, but no sample of "
                f"{cfg.cache} has pose keypoints (a cache written before precompute kept them, or clips without "
                "tracks): run humo precompute again, or set the pose ratio to 0"
            )
        if cfg.continuation_share > 0 and (lacking := self.dataset.lacking_continuation()):
            raise HumoError(
                f"training data: continuation_share {cfg.continuation_share} needs clips of at least "
                f"{CONTINUATION_MIN_LATENTS} latent frames; {len(lacking)} are shorter (e.g. {', '.join(lacking[:3])})"
            )
        self.sampler = TaskBatchSampler(
            pools,
            lambda step: task_probabilities(stage, step, cfg),
            seed=cfg.seed,
            batch_size=cfg.batch_size,
            world_size=info.world_size,
            rank=info.rank,
            grad_accum=cfg.grad_accum,
            start=self.micro,
            continuation=cfg.continuation_share,
            slots=True,
        )

    # -- checks ------------------------------------------------------------------------------------------------
    def _check_model(self, dcfg) -> None:
        cfg, stage = self.cfg, self.stage
        if stage.references and dcfg.reference_mode == "none":
            raise HumoError(f"model {cfg.model}: has no reference injection (reference_mode none); stage {cfg.stage}")
        if stage.audio and not dcfg.audio:
            raise HumoError(f"model {cfg.model}: has no audio path; stage 2 trains it")
        if self.mask_weight > 0 and dcfg.mask_head_blocks == 0:
            raise HumoError(
                f"model {cfg.model}: has no mask head; set model_overrides.mask_head_blocks=K or mask_head=false"
            )

    def _check_dims(self, dims: dict[str, Any]) -> None:
        d, root = self.dit_cfg, self.cache.root
        if dims.get("latent_channels", d.out_dim) != d.out_dim:
            raise HumoError(f"cache {root}: latents have {dims['latent_channels']} channels, the DiT {d.out_dim}")
        if dims.get("text_dim", d.text_dim) != d.text_dim:
            raise HumoError(f"cache {root}: text embeddings are {dims['text_dim']} wide, the DiT takes {d.text_dim}")
        want = [d.audio_window, d.audio_groups, d.audio_feat_dim]
        if self.stage.audio and "audio_window" in dims and list(dims["audio_window"]) != want:
            raise HumoError(f"cache {root}: audio windows are {dims['audio_window']}, the DiT takes {want}")

    # -- resume ------------------------------------------------------------------------------------------------
    def _resume_path(self) -> Path | None:
        r = self.cfg.resume
        if r == "never":
            return None
        if r == "auto":
            return latest_checkpoint(self.cfg.out)
        p = Path(r)
        if not p.is_dir():
            raise HumoError(f"resume {p}: no such checkpoint folder")
        return p

    def _resume(self, path: Path) -> None:
        ck = load_checkpoint(path, self.device)
        st = ck["state"]
        saved = st.get("config", {})
        changed = [k for k in STRUCTURAL_FIELDS if k in saved and saved[k] != getattr(self.cfg, k)]
        if changed:
            raise HumoError(f"resume {path}: the config changed in {', '.join(changed)}; start a new run with init")
        if st.get("world_size", 1) != self.info.world_size:
            raise HumoError(
                f"resume {path}: written by {st.get('world_size')} processes, now {self.info.world_size}; "
                "resume with the same count"
            )
        own = self.model.state_dict()
        check_keys(f"resume {path}: model key mismatch", dict.fromkeys(ck["model"]), dict.fromkeys(own))
        load_training_state(self.model, self.optimizer, self.ema, ck, f"resume {path}")
        self._rng = ck["rng"]
        self.step, self.micro = int(st["step"]), int(st["micro"])

    # -- one step ----------------------------------------------------------------------------------------------
    def _micro_step(self, batch, last: bool) -> torch.Tensor:
        cfg, info = self.cfg, self.info
        lat = batch.latents
        clean = self.num_refs + (0 if batch.motion is None else batch.motion.shape[2])  # frames besides the video
        shape = (lat.shape[1], lat.shape[2] + clean, lat.shape[3], lat.shape[4])
        lo = info.rank * cfg.batch_size
        draws = draw_rows(cfg.seed, self.micro, range(lo, lo + cfg.batch_size), shape, cfg)
        sync = nullcontext() if last or not hasattr(self.ddp_model, "no_sync") else self.ddp_model.no_sync()
        with sync:
            loss, parts = compute_loss(
                self.ddp_model,
                batch,
                draws.to(self.device),
                self.null_text,
                reference_mode=self.dit_cfg.reference_mode,
                reference_rope=self.dit_cfg.reference_rope,
                use_audio=self.stage.audio,
                mask_weight=self.mask_weight,
                face_loss_weight=cfg.face_loss_weight,
                pose_loss_weight=cfg.pose_loss_weight,
                pose_loss_joints=tuple(cfg.pose_loss_joints),
                person_mask_weight=self.person_weight,
                person_face_weight=cfg.person_face_weight,
                autocast_dtype=torch.bfloat16 if cfg.precision == "bf16" else None,
            )
            (loss / cfg.grad_accum).backward()
        zero = torch.zeros_like(loss)
        return torch.stack([loss.detach(), parts["flow"], parts.get("mask", zero), parts.get("persons", zero)]).float()

    def _save(self) -> None:
        # Every process takes part in gathering (FSDP shards); the first one writes.
        model_sd, optim_sd, ema_sd = gather_training_state(self.model, self.optimizer, self.ema)
        if self.info.is_main:
            state = {
                "micro": self.micro,
                "samples": self.micro * self.cfg.batch_size * self.info.world_size,
                "world_size": self.info.world_size,
                "config": self.cfg.to_dict(),
            }
            save_checkpoint(
                self.cfg.out,
                self.step,
                model=model_sd,
                ema=ema_sd,
                optimizer=optim_sd,
                rng=capture_rng(),
                state=state,
                metadata={"humo_config": json.dumps(self.dit_cfg.to_dict())},
                keep=self.cfg.keep_checkpoints,
            )
        barrier(self.info)

    def export(self) -> Path:
        """Write ``OUT/final/ema.safetensors``: the EMA weights (LoRA merged) as a plain HumoDiT checkpoint,
        plus ``lora_adapter.safetensors`` (the EMA adapters alone) for a LoRA run."""
        from humo.checkpoint import save_dit, save_state_dict

        final = Path(self.cfg.out) / FINAL_DIR
        path = final / EXPORT_FILE
        with self.ema.applied():
            sd = full_model_state(self.model)  # a copy on the CPU, gathered from every process
        if self.info.is_main:
            merged = merge_lora(sd, lora_scaling(self.cfg.lora_rank, self.cfg.lora_alpha)) if self.cfg.lora_rank else sd
            save_dit(SimpleNamespace(cfg=self.dit_cfg, state_dict=lambda: merged), path)
            if self.cfg.lora_rank:
                save_state_dict({k: v for k, v in sd.items() if ".lora_" in k}, final / "lora_adapter.safetensors")
            with atomic_path(final / "train_config.json") as tmp:
                tmp.write_text(json.dumps(self.cfg.to_dict(), indent=1))
        barrier(self.info)
        return path

    def run(self) -> dict[str, Any]:
        from humo.data.loader import Collate, make_loader

        cfg, info = self.cfg, self.info
        if info.is_main:
            with atomic_path(Path(cfg.out) / "config.json") as tmp:
                tmp.write_text(json.dumps(cfg.to_dict(), indent=1))
        audio_window = (
            [self.dit_cfg.audio_window, self.dit_cfg.audio_groups, self.dit_cfg.audio_feat_dim]
            if self.stage.audio
            else None
        )
        loader = make_loader(
            self.dataset,
            self.sampler,
            Collate(
                self.num_refs,
                audio_window,
                (self.dit_cfg.pose_scale, self.dit_cfg.pose_sigma) if self.uses_pose else None,
                persons=self.persons,
            ),
            num_workers=cfg.num_workers,
            pin_memory=self.device.type == "cuda",
        )
        log = RunLog(cfg, info, self.step)
        if hasattr(self, "_rng"):
            # Last, so that nothing in the set-up above consumes random numbers after the restore.
            restore_rng(self._rng)
        sleep = float(os.environ.get(STEP_SLEEP_ENV, "0") or 0)
        self.ddp_model.train()
        batches = iter(loader)
        global_batch = cfg.batch_size * info.world_size * cfg.grad_accum
        last = None
        t_log, n_log = time.perf_counter(), 0
        try:
            while self.step < cfg.steps:
                lr = lr_at(self.step, cfg)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                self.optimizer.zero_grad(set_to_none=True)
                parts = torch.zeros(4, device=self.device)
                for k in range(cfg.grad_accum):
                    batch = next(batches).to(self.device)
                    parts += self._micro_step(batch, last=k == cfg.grad_accum - 1) / cfg.grad_accum
                    self.micro += 1
                params = list(self.params.values())
                clip = cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
                grad_norm = torch.nn.utils.clip_grad_norm_(params, clip)
                if hasattr(grad_norm, "full_tensor"):  # FSDP: a DTensor
                    grad_norm = grad_norm.full_tensor()
                self.optimizer.step()
                self.ema.update()
                self.step += 1
                n_log += global_batch
                stats = all_mean(torch.cat([parts, grad_norm.reshape(1).to(parts)]), info).tolist()
                last = stats[0]
                if not math.isfinite(last):
                    raise HumoError(f"training diverged: loss {last} at step {self.step} (lower lr or check data)")
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    now = time.perf_counter()
                    rec = {
                        "step": self.step,
                        "loss": stats[0],
                        "flow": stats[1],
                        "mask": stats[2],
                        **({"person_masks": stats[3]} if self.person_weight > 0 else {}),
                        "grad_norm": stats[4],
                        "lr": lr,
                        "samples": self.micro * cfg.batch_size * info.world_size,
                        "samples_per_s": n_log / max(now - t_log, 1e-9),
                    }
                    if self.stage.index == 2 and "av" in self.stage.tasks:  # not under condition_ratios
                        rec["av_fraction"] = task_probabilities(self.stage, self.step - 1, cfg).get("av", 0.0)
                    log.record(rec)
                    t_log, n_log = now, 0
                log.advance()
                if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps:
                    self._save()
                if sleep:
                    time.sleep(sleep)
            export = self.export()
        finally:
            log.close()
        return {"steps": self.step, "loss": last, "export": str(export), "out": str(cfg.out)}


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Run one training stage (see `Trainer`); under torchrun every process calls this."""
    trainer, finished = None, False
    try:
        trainer = Trainer(cfg)
        result = trainer.run()
        finished = True
        return result
    finally:
        if trainer is not None:
            shutdown(trainer.info, together=finished)
        else:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
