"""One attack run's hyperparameters, and the optimizers and schedules they name.

A run is fully described by an :class:`AttackSetting`. Inside the vectorised program every
numeric field is a traced per-run value, so runs that differ in learning rate, step budget, batch
size, schedule, warmup, weight decay or momentum share one compiled program. Only the optimizer
*family* (the shape of its state) is static: Adam and AdamW share the Adam state, SGD and SGD with
momentum share one trace, RMSprop has its own. So is what the run trains (the whole model, the
head alone, BitFit's biases, or LoRA adapters of one rank on one set of matrices: see
:mod:`sdm_jax.models.adapters`); LoRA's alpha is traced. The runner groups runs by both.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass

import jax.numpy as jnp

from sdm_jax.attacks.compression import COMPRESSIONS
from sdm_jax.fine_tune import OPTIMIZERS
from sdm_jax.models.adapters import ADAPTERS

SCHEDULES = ("constant", "linear", "cosine")
# What an attack trains, as eval.py --attack-modes names it: full fine-tuning, a linear probe
# on frozen features, or one of the parameter-efficient adapters.
ATTACK_MODES = ("full", "frozen", "bitfit", "lora")
_SCHEDULE_CODE = {name: code for code, name in enumerate(SCHEDULES)}


@dataclass(frozen=True)
class AttackSetting:
    """Hyperparameters of one fine-tuning attack.

    ``steps`` is this run's own budget; ``batch_size`` its effective batch (rows past it are
    weight-0 padding up to the program's fixed shape). ``frozen_base`` trains the head only (a
    linear probe on the backbone's features). ``warmup_steps`` ramps the learning rate linearly
    from ~0; ``linear`` and ``cosine`` then decay it to 0 at ``steps``. ``weight_decay`` is
    decoupled (AdamW-style) for every optimizer; ``None`` means the optimizer's default in
    :data:`sdm_jax.fine_tune.OPTIMIZERS` (0.01 for AdamW, 0 otherwise). ``momentum`` is used by
    ``sgd_momentum`` only (default 0.9).
    ``seed`` draws the fresh head and the batch order; ``data_seed`` draws which ``n`` examples
    the attacker holds. ``adapter`` trains BitFit's biases or LoRA adapters (rank
    ``lora_rank``, scale ``lora_alpha / lora_rank``, on the backbone's ``lora_targets`` groups,
    ``+``-joined) beside a fresh head instead of the whole backbone; the base stays frozen.
    ``compression`` quantises (``int8``, ``int4``) or prunes (``prune50``) the backbone's
    linear layers before the attack starts (:mod:`sdm_jax.attacks.compression`).
    """

    lr: float = 1e-3
    steps: int = 500
    batch_size: int = 16
    optimizer: str = "adam"
    frozen_base: bool = False
    schedule: str = "constant"
    warmup_steps: int = 0
    weight_decay: float | None = None
    momentum: float | None = None
    seed: int = 0
    data_seed: int = 0
    adapter: str = "none"
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_targets: str = "attention"
    compression: str = "none"

    @property
    def mode(self) -> str:
        """One of :data:`ATTACK_MODES`."""
        if self.frozen_base:
            return "frozen"
        return "full" if self.adapter == "none" else self.adapter

    @property
    def attack_family(self) -> str:
        """What the attack trains, after any compression: ``full``, ``int4+lora``, ..."""
        return self.mode if self.compression == "none" else f"{self.compression}+{self.mode}"

    @property
    def lora_scale(self) -> float:
        return self.lora_alpha / self.lora_rank if self.adapter == "lora" else 0.0

    @property
    def family(self) -> str:
        return OPTIMIZERS[self.optimizer].family

    @property
    def effective_weight_decay(self) -> float:
        if self.weight_decay is not None:
            return float(self.weight_decay)
        return OPTIMIZERS[self.optimizer].weight_decay

    @property
    def effective_momentum(self) -> float:
        default = OPTIMIZERS[self.optimizer].momentum
        if not default:
            return 0.0
        return default if self.momentum is None else float(self.momentum)

    @property
    def schedule_code(self) -> int:
        return _SCHEDULE_CODE[self.schedule]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def validate_settings(settings: Iterable[AttackSetting]) -> list[AttackSetting]:
    """Check every setting before any compute; raise one line naming the first bad field."""
    checked = list(settings)
    if not checked:
        raise ValueError("no attack settings given")
    for index, setting in enumerate(checked):
        where = f"attack setting {index}"
        if setting.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"{where}: unknown optimizer {setting.optimizer!r}; "
                f"choose from {sorted(OPTIMIZERS)}"
            )
        if setting.schedule not in SCHEDULES:
            raise ValueError(f"{where}: unknown schedule {setting.schedule!r}; choose {SCHEDULES}")
        if not setting.lr > 0:
            raise ValueError(f"{where}: lr must be positive, got {setting.lr}")
        if setting.steps <= 0 or setting.batch_size <= 0:
            raise ValueError(
                f"{where}: steps and batch_size must be positive, got "
                f"steps={setting.steps} batch_size={setting.batch_size}"
            )
        if not 0 <= setting.warmup_steps < setting.steps:
            raise ValueError(
                f"{where}: warmup_steps must lie in [0, steps), got {setting.warmup_steps}"
            )
        if setting.effective_weight_decay < 0 or not 0 <= setting.effective_momentum < 1:
            raise ValueError(f"{where}: weight_decay must be >= 0 and momentum in [0, 1)")
        if setting.adapter not in ADAPTERS:
            raise ValueError(f"{where}: unknown adapter {setting.adapter!r}; choose {ADAPTERS}")
        if setting.frozen_base and setting.adapter != "none":
            raise ValueError(f"{where}: a frozen-base probe cannot also train a {setting.adapter} "
                             "adapter")
        if setting.compression not in COMPRESSIONS:
            raise ValueError(f"{where}: unknown compression {setting.compression!r}; choose "
                             f"{COMPRESSIONS}")
        if setting.lora_rank <= 0 or not setting.lora_alpha > 0:
            raise ValueError(f"{where}: lora_rank and lora_alpha must be positive, got "
                             f"{setting.lora_rank}, {setting.lora_alpha}")
    return checked


def schedule_factor(step, total_steps, warmup_steps, schedule_code):
    """Learning-rate multiplier at ``step`` (0-based); every argument may be a traced scalar."""
    step = jnp.asarray(step, jnp.float32)
    total = jnp.asarray(total_steps, jnp.float32)
    warmup = jnp.asarray(warmup_steps, jnp.float32)
    warm = jnp.where(warmup > 0, jnp.minimum(1.0, (step + 1.0) / jnp.maximum(warmup, 1.0)), 1.0)
    progress = jnp.clip((step - warmup) / jnp.maximum(total - warmup, 1.0), 0.0, 1.0)
    decay = jnp.select(
        [schedule_code == _SCHEDULE_CODE["linear"], schedule_code == _SCHEDULE_CODE["cosine"]],
        [1.0 - progress, 0.5 * (1.0 + jnp.cos(jnp.pi * progress))],
        1.0,
    )
    return warm * decay
