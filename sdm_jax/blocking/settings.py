"""Every knob of one MLAC outer step, with the reference method's defaults.

The trainer maps its YAML section onto :class:`MLACSettings` one field to one key, so names stay
plain and each field is documented here, in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from sdm_jax.fine_tune import OPTIMIZERS

INNER_OPTIMIZERS = tuple(OPTIMIZERS)
INNER_ATTACKS = ("full", "head", "lora")
REMAT_POLICIES = ("none", "full", "dots", "sqrt")
INNER_LR_SPACES = ("raw", "log")
META_GRADIENT_MODES = ("auto", "forward", "reverse")
SECOND_ORDER_MODES = ("auto", "forward_over_reverse", "reverse")
ATTACKER_BATCHING = ("auto", "vectorised", "sequential")

# Loss weights whose term is *maximised*: the total outer loss adds them with a minus sign.
MAXIMISED_TERMS = ("bad_base", "bad_adapted", "linear_mi", "good_adapted_bad", "entropy")
MINIMISED_TERMS = (
    "good_base",
    "bad_adapted_grad",
    "mlm",
    "good_adapted",
    "kl_uniform",
    "inverse_ce",
)
ALL_TERMS = MINIMISED_TERMS + MAXIMISED_TERMS


@dataclass(frozen=True)
class MLACSettings:
    """Settings of the simulated attacker, the blocking objective and the outer update.

    Simulated attacker (inner loop):

    - ``inner_steps``: K, the attacker's optimisation steps per outer step (0 = adversarial
      censoring: the adapted logits are the fresh head on the unadapted features).
    - ``batch_size_choices``: effective inner batch sizes; each simulated attacker draws one and
      keeps it for its K steps (as the reference does); the sampler expresses it with the
      per-example ``weight`` mask inside one fixed shape (``max`` of the set). Kept here so the
      trainer builds its inner sampler from the same numbers.
    - ``inner_optimizers``: optimizer kinds an attacker may use, drawn uniformly per attacker:
      any name of :data:`sdm_jax.fine_tune.OPTIMIZERS` (``adam, adamw, sgd, sgd_momentum,
      rmsprop``), the same table the evaluation attacks use.
    - ``inner_attacks``: what an attacker trains, drawn uniformly per attacker like its
      optimizer: ``full`` (backbone and head), ``head`` (head only) or ``lora`` (low-rank
      adapters of rank ``inner_lora_rank``, scale ``inner_lora_alpha / inner_lora_rank``, on the
      backbone's ``inner_lora_targets`` groups, ``+``-joined, beside a frozen base, plus the
      head: the PEFT attack of evaluation, simulated). All attackers carry the same parameter
      tree, so an enabled ``lora`` costs its adapters' forward work for every attacker.
    - ``learn_inner_lr``: meta-learn the inner learning rate (one lr shared by all attackers,
      initialised at ``inner_lr_init`` and clamped into ``[inner_lr_min, inner_lr_max]`` after
      each meta update); ``False`` draws each attacker's lr log-uniformly from
      ``[inner_lr_sample_min, inner_lr_sample_max]``.
    - ``inner_lr_space``: what the meta optimizer learns. ``raw`` (the reference's rule): the lr
      itself, with Adam at ``meta_lr``, so it moves by about ``meta_lr`` per outer step (from
      3e-4 it can reach the 1e-2 ceiling in ~100 steps). ``log``: log-lr, with its own Adam lr
      ``log_lr_meta_lr`` (a step multiplies the lr by about ``exp(log_lr_meta_lr)``; 0.03
      climbs from 3e-4 to 1e-2 in about as many steps as the raw rule, where ``meta_lr=1e-4``
      in log space would barely move it).
    - ``learn_head_init``: start every attacker from a meta-learned head instead of a fresh random
      one (the reference intends this but in practice runs fresh heads: the default).
    - ``inner_grad_clip``: global-norm clip of each inner gradient.
    - ``adam_eps_root``: added under Adam's square root; must be > 0, or second-order gradients
      turn NaN where a second moment is exactly zero.
    - ``inner_weight_decay``: AdamW's decoupled weight decay. ``inner_momentum``: SGD momentum
      (``sgd_momentum``). ``rmsprop_decay``: RMSprop's second-moment decay (torch's 0.99).
    - ``frozen_base_prob``: probability that an attacker trains only its head.
    - ``param_noise_std``: std of Gaussian noise added to the attacker's parameters before each
      step (0 = off).
    - ``remat``: ``jax.checkpoint`` policy of one inner step: ``none``, ``full`` (recompute each
      step in the backward pass), ``dots`` (keep matmul results) or ``sqrt`` (scan of scans,
      rematerialising chunks of about √K steps).
    - ``active_rows``: > 0 adapts only this many word-embedding rows (the union of token ids of
      the inner and outer batches, padded to this static size); exact for every optimizer here.
      Needs a backbone with ``embedding_path`` and ``input_ids``. Overflow is reported in the
      metrics as ``active_rows_overflow`` (> 0 means the size is too small and results are wrong).
    - ``first_order``: treat every inner update as a constant (straight-through): the base
      parameters reach the adapted ones through the identity, the lr through its direct factor.
    - ``meta_batch_size``: M simulated attackers per outer step (vmapped, sharded on ``data``).
    - ``attacker_batching``: how the M attackers of one device run. ``vectorised``: one
      ``vmap``ped program (matmuls gain an attacker axis); ``sequential``: ``lax.map``, one
      attacker after the other with plain matmuls (measured 1.02–1.05× faster per step on a
      2-core CPU, where a batched matmul buys no parallelism); ``auto`` (default):
      ``sequential`` on a CPU backend without a device mesh, ``vectorised`` otherwise. Both
      compute the same numbers.
    - ``shared_outer_batch``: one outer batch ``[B, ...]`` for all attackers, else ``[M, B, ...]``.
    - ``meta_gradient_mode``: how the attacker loss reaches the meta-parameters. ``reverse``: a
      second pullback through the unrolled attacker; ``forward``: the tangent along the learned
      inner lr carried beside the primal (one pullback in all; only for the lr alone, without
      ``learn_head_init``, and with reverse-over-reverse second-order terms); ``auto``
      (default): ``forward`` where it applies, unless ``second_order`` is
      ``forward_over_reverse``. Both are exact.
    - ``second_order``: how the meta-gradient differentiates each inner gradient.
      ``reverse``: JAX's reverse-over-reverse (the inner backward pass keeps its activations);
      ``forward_over_reverse``: Hessian-vector products in forward mode from the step's inputs
      alone (:mod:`sdm_jax.blocking.second_order`). It cannot carry the lr's forward-mode
      tangent, so with a learned lr it costs a second pullback. ``auto`` (default):
      ``forward_over_reverse`` unless the lr's forward-mode tangent is in use. Measured on a
      2-core CPU: with no meta-parameters (sampled or fixed lr) at K=16 it is 1.37× faster than
      ``reverse`` with 29% less memory; with the learned lr it is 1.05× faster at K=16 (BERT-tiny
      shape, seq 128) but 1.09× slower than the forward tangent at the demo's K=2 with
      batches of 4–8 (median of three pairs, benchmarks/RESULTS.md), hence the rule. All are
      exact; ``first_order`` has no second-order terms.

    Blocking objective (``l_*`` weights; 0 removes the term from the program). The total outer
    loss is ``sum(l_t * term_t for minimised t) - sum(l_t * term_t for maximised t)``:

    - minimised: ``good_base`` (profession CE, unadapted), ``bad_adapted_grad`` (mean of the K
      inner gradient norms and the final model's gradient norm on the outer batch), ``mlm``
      (feature distillation MSE to the original backbone), ``good_adapted`` (profession CE of a
      model adapted on the profession task), ``kl_uniform`` (KL(uniform ‖ p) of adapted gender
      predictions), ``inverse_ce`` (−log(1 − p_true) of adapted gender predictions);
    - maximised: ``bad_base`` (gender CE, unadapted), ``bad_adapted`` (gender CE averaged over the
      K+1 adapted logit sets), ``linear_mi`` (CE of the best linear read-out ``Z·W``,
      ``W ∈ [-1,1]^{C×C}``, averaged over the logit sets), ``good_adapted_bad`` (gender CE of the
      profession-adapted model), ``entropy`` (prediction entropy of the adapted models).
    - ``entropy_late_power``: logit set t of the entropy term weighs ``(t+1)**power`` (0 = flat).
    - ``linear_mi_iterations``: fixed iterations of the projected solver for ``W*``.

    Outer update:

    - ``outer_lr``, ``outer_grad_clip``: Adam on the model parameters.
    - ``meta_lr``, ``meta_grad_clip``: Adam on the attacker's meta-parameters, minimising the
      adapted gender CE (``log_lr_meta_lr`` replaces ``meta_lr`` for a log-space lr).
    """

    inner_steps: int = 16
    batch_size_choices: tuple[int, ...] = (12, 24, 48)
    inner_optimizers: tuple[str, ...] = ("adam",)
    inner_attacks: tuple[str, ...] = ("full",)
    inner_lora_rank: int = 8
    inner_lora_alpha: float = 16.0
    inner_lora_targets: str = "attention"
    learn_inner_lr: bool = True
    inner_lr_space: str = "raw"
    inner_lr_init: float = 3e-4
    inner_lr_min: float = 1e-6
    inner_lr_max: float = 1e-2
    inner_lr_sample_min: float = 1e-4
    inner_lr_sample_max: float = 1e-2
    learn_head_init: bool = False
    inner_grad_clip: float = 100.0
    adam_eps_root: float = 1e-20
    inner_weight_decay: float = 0.01
    inner_momentum: float = 0.9
    rmsprop_decay: float = 0.99
    frozen_base_prob: float = 0.0
    param_noise_std: float = 0.0
    remat: str = "none"
    active_rows: int = 0
    first_order: bool = False
    meta_batch_size: int = 1
    attacker_batching: str = "auto"
    shared_outer_batch: bool = True
    meta_gradient_mode: str = "auto"
    second_order: str = "auto"

    l_good_base: float = 1.0
    l_bad_base: float = 0.0
    l_bad_adapted: float = 0.0
    l_linear_mi: float = 1.0
    l_bad_adapted_grad: float = 1.0
    l_mlm: float = 0.0
    l_good_adapted: float = 0.0
    l_good_adapted_bad: float = 0.0
    l_entropy: float = 0.0
    l_kl_uniform: float = 0.0
    l_inverse_ce: float = 0.0
    entropy_late_power: float = 0.0
    linear_mi_iterations: int = 100

    outer_lr: float = 1e-5
    outer_grad_clip: float = 10.0
    meta_lr: float = 1e-4
    meta_grad_clip: float = 10.0
    log_lr_meta_lr: float = 0.03

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise ValueError(f"invalid MLACSettings: {problems[0]}")

    def weight(self, term: str) -> float:
        return float(getattr(self, f"l_{term}"))

    def enabled(self, term: str) -> bool:
        return self.weight(term) != 0.0

    @property
    def adapts_good_task(self) -> bool:
        return self.enabled("good_adapted") or self.enabled("good_adapted_bad")

    @property
    def has_meta_params(self) -> bool:
        return self.learn_inner_lr or self.learn_head_init

    @property
    def forward_mode_meta_gradient(self) -> bool:
        """Whether the meta-gradient comes by forward mode (see ``meta_gradient_mode``)."""
        scalar_only = self.learn_inner_lr and not self.learn_head_init
        if self.meta_gradient_mode == "auto":
            return scalar_only and self.second_order != "forward_over_reverse"
        return scalar_only and self.meta_gradient_mode == "forward"

    @property
    def forward_over_reverse(self) -> bool:
        """Whether inner gradients are differentiated forward-over-reverse (``second_order``)."""
        if self.first_order or self.second_order == "reverse":
            return False
        return not self.forward_mode_meta_gradient


def _problems(s: MLACSettings) -> list[str]:
    problems = []
    if s.inner_steps < 0:
        problems.append(f"inner_steps must be >= 0, got {s.inner_steps}")
    if not s.batch_size_choices or min(s.batch_size_choices) <= 0:
        problems.append(f"batch_size_choices must be positive sizes, got {s.batch_size_choices}")
    unknown = [o for o in s.inner_optimizers if o not in INNER_OPTIMIZERS]
    if not s.inner_optimizers or unknown:
        problems.append(f"inner_optimizers must be drawn from {INNER_OPTIMIZERS}, got "
                        f"{s.inner_optimizers}")
    if len(set(s.inner_optimizers)) != len(s.inner_optimizers):
        problems.append(f"inner_optimizers has duplicates: {s.inner_optimizers}")
    unknown = [a for a in s.inner_attacks if a not in INNER_ATTACKS]
    if not s.inner_attacks or unknown or len(set(s.inner_attacks)) != len(s.inner_attacks):
        problems.append(f"inner_attacks must be distinct choices from {INNER_ATTACKS}, got "
                        f"{s.inner_attacks}")
    if s.inner_lora_rank <= 0 or not s.inner_lora_alpha > 0:
        problems.append("inner_lora_rank and inner_lora_alpha must be positive, got "
                        f"{s.inner_lora_rank}, {s.inner_lora_alpha}")
    if not 0 < s.inner_lr_min <= s.inner_lr_init <= s.inner_lr_max:
        problems.append("need 0 < inner_lr_min <= inner_lr_init <= inner_lr_max, got "
                        f"{s.inner_lr_min}, {s.inner_lr_init}, {s.inner_lr_max}")
    if not 0 < s.inner_lr_sample_min <= s.inner_lr_sample_max:
        problems.append("need 0 < inner_lr_sample_min <= inner_lr_sample_max, got "
                        f"{s.inner_lr_sample_min}, {s.inner_lr_sample_max}")
    if s.adam_eps_root <= 0:
        problems.append(f"adam_eps_root must be > 0 (NaN meta-grads), got {s.adam_eps_root}")
    if not 0.0 <= s.frozen_base_prob <= 1.0:
        problems.append(f"frozen_base_prob must lie in [0, 1], got {s.frozen_base_prob}")
    if s.param_noise_std < 0:
        problems.append(f"param_noise_std must be >= 0, got {s.param_noise_std}")
    if s.inner_lr_space not in INNER_LR_SPACES:
        problems.append(f"inner_lr_space must be one of {INNER_LR_SPACES}, got "
                        f"{s.inner_lr_space!r}")
    if s.remat not in REMAT_POLICIES:
        problems.append(f"remat must be one of {REMAT_POLICIES}, got {s.remat!r}")
    if s.meta_gradient_mode not in META_GRADIENT_MODES:
        problems.append(f"meta_gradient_mode must be one of {META_GRADIENT_MODES}, got "
                        f"{s.meta_gradient_mode!r}")
    if s.second_order not in SECOND_ORDER_MODES:
        problems.append(f"second_order must be one of {SECOND_ORDER_MODES}, got "
                        f"{s.second_order!r}")
    if s.second_order == "forward_over_reverse" and s.meta_gradient_mode == "forward":
        problems.append("second_order forward_over_reverse cannot carry meta_gradient_mode "
                        "forward's lr tangent (use meta_gradient_mode auto or reverse)")
    if s.attacker_batching not in ATTACKER_BATCHING:
        problems.append(f"attacker_batching must be one of {ATTACKER_BATCHING}, got "
                        f"{s.attacker_batching!r}")
    if s.meta_gradient_mode == "forward" and s.learn_head_init:
        problems.append("meta_gradient_mode forward carries one tangent, for the inner lr: it "
                        "cannot serve learn_head_init (use auto or reverse)")
    if s.active_rows < 0:
        problems.append(f"active_rows must be >= 0, got {s.active_rows}")
    if s.meta_batch_size <= 0:
        problems.append(f"meta_batch_size must be positive, got {s.meta_batch_size}")
    if s.linear_mi_iterations <= 0:
        problems.append(f"linear_mi_iterations must be positive, got {s.linear_mi_iterations}")
    for name in ("inner_grad_clip", "outer_grad_clip", "meta_grad_clip", "outer_lr", "meta_lr",
                 "log_lr_meta_lr"):
        if getattr(s, name) <= 0:
            problems.append(f"{name} must be positive, got {getattr(s, name)}")
    negative = [f.name for f in fields(s) if f.name.startswith("l_") and getattr(s, f.name) < 0]
    if negative:
        problems.append(f"loss weights must be >= 0 (signs are fixed by the term): {negative}")
    return problems
