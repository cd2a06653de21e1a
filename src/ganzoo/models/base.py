"""What every ganzoo family shares: players, their optimizers, the prior, and manual steps.

A family subclasses :class:`GenerativeModel`, declares its ``players`` (one optimizer each, in
that order) and writes ``training_step`` as its paper's algorithm, one block per player::

    with self.toggled_optimizer(opt):
        self._step(opt, loss)

Networks, losses, the prior, and each player's optimizer and scheduler factories arrive ready:
Hydra instantiates the whole ``model`` config in one place (:func:`ganzoo.models.build_model`),
which keeps the resolved config on the model; every checkpoint carries it, so
:func:`ganzoo.models.load_checkpoint` rebuilds any family without the run's config files.

Exact resume: every checkpoint carries the random state of every rank (torch CPU and CUDA, NumPy,
Python ``random``); a resumed fit restores this rank's state when fitting starts. Each rank draws
its own noise: at the start of a fit the global generators are seeded from (run seed, rank).
"""

from __future__ import annotations

import itertools
import os
import random
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.distributed as dist
from torch import Tensor, nn

from ganzoo.models.priors import NormalPrior, Prior

#: Version of the ``checkpoint["ganzoo"]`` entry. 1: family, batches_seen, run_config (no random
#: states: resumes, but not exactly); 2: + ``rng``, one random state per rank; 3: + ``model``, the
#: model config it was built from (before: rebuilt from Lightning's ``hyper_parameters``).
CHECKPOINT_FORMAT = 3

#: A player's optimizer factory (a ``_partial_`` optimizer): parameters -> optimizer.
OptimizerFactory = Callable[[list[nn.Parameter]], torch.optim.Optimizer]
#: A player's scheduler factory (a ``_partial_`` scheduler): optimizer -> scheduler.
SchedulerFactory = Callable[[torch.optim.Optimizer], Any]


def newer_format(meta: dict[str, Any]) -> str | None:
    """Why a checkpoint's ``ganzoo`` entry is too new for this ganzoo (``None`` if it is not)."""
    version = meta.get("format", 1)
    if version > CHECKPOINT_FORMAT:
        return (
            f"ganzoo checkpoint format {version}, newer than this ganzoo reads "
            f"({CHECKPOINT_FORMAT}): upgrade ganzoo"
        )
    return None


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode for the duration, then back to the previous mode."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def rng_state() -> dict[str, Any]:
    """The state of every global generator training draws from (torch CPU and CUDA, NumPy, Python),
    in types that ``torch.load(weights_only=True)`` reads."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def noise_seed(seed: int, rank: int) -> int:
    """The seed of rank ``rank``'s global generators in a run seeded with ``seed``: distinct per
    rank and apart from the stream that initialised the networks (``seed`` itself)."""
    return int(np.random.SeedSequence([int(seed), int(rank)]).generate_state(1)[0])


def seed_globals(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


class GenerativeModel(pl.LightningModule):
    """Base LightningModule of a GAN family with manual optimization.

    Subclasses set ``players`` and create one attribute per player network (or override
    :meth:`player_parameters` for players that span several networks, e.g. a joint E+G step).
    """

    #: Player names, in optimizer order. Each names an optimizer factory in ``optimizer``.
    players: tuple[str, ...] = ()
    #: Whether the family has an encoder (``encode`` / ``reconstruct`` work).
    has_encoder: bool = False

    def __init__(
        self,
        *,
        latent_dim: int,
        prior: Prior | None,
        optimizer: Mapping[str, OptimizerFactory],
        lr_scheduler: Mapping[str, SchedulerFactory | None] | None,
        num_fixed_samples: int,
        ema: Mapping[str, Any] | None = None,
        compile: bool | Mapping[str, Any] = False,
    ):
        super().__init__()
        self.automatic_optimization = False
        self.latent_dim = latent_dim
        self.prior: Prior = prior if prior is not None else NormalPrior(latent_dim)
        if self.prior.dim != latent_dim:
            raise ValueError(
                f"model.prior.dim={self.prior.dim} differs from model.latent_dim={latent_dim}"
            )
        self._optimizer_factories = dict(optimizer or {})
        # ``all``: the schedule of every player without an entry of its own.
        schedules = {k: v for k, v in (lr_scheduler or {}).items() if v}
        every = schedules.pop("all", None)
        if every is not None:
            schedules = {p: schedules.get(p, every) for p in self.players} | schedules
        self._scheduler_factories = schedules
        for key, table in (
            ("model.optimizer", self._optimizer_factories),
            ("model.lr_scheduler", self._scheduler_factories),
        ):
            unknown = sorted(set(table) - set(self.players))
            if unknown:
                raise ValueError(
                    f"{key} names unknown players {unknown}; this family's players are {list(self.players)}"
                )
        missing = [p for p in self.players if p not in self._optimizer_factories]
        if missing:
            raise ValueError(
                f"model.optimizer has no entry for players {missing}: add model.optimizer.<player>"
            )
        # Fixed noise, drawn from its own seeded stream so that sample grids are comparable across
        # epochs and across runs of the same prior.
        fixed = self.prior.sample(num_fixed_samples, generator=torch.Generator().manual_seed(0))
        self.register_buffer("fixed_z", fixed)
        #: Training batches seen so far (schedules count batches, never ``global_step``).
        self.batches_seen = 0
        ema = dict(ema or {})
        unknown = sorted(set(ema) - {"decay", "start", "use"})
        if unknown:
            raise ValueError(f"model.ema has unknown keys {unknown}; it takes decay, start, use")
        #: Exponential moving average of the generator (and encoder): decay (None: off), the
        #: batch it starts at, and whether sampling and evaluation use it (``ema_settings``).
        self.ema_decay: float | None = ema.get("decay")
        self.ema_start = int(ema.get("start") or 0)
        self.use_ema = bool(ema.get("use", True))
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"model.ema.decay must be in (0, 1) or null, got {self.ema_decay}")
        if self.ema_start < 0:
            raise ValueError(f"model.ema.start must be >= 0, got {self.ema_start}")
        self.ema: nn.ModuleDict | None = None
        self._ema_lists: dict[str, Any] | None = None
        #: The run's resolved config (set by ``ganzoo-train``), saved in every checkpoint so that
        #: ``ganzoo-eval`` / ``ganzoo-sample`` can rebuild the run's data without its directory.
        self.run_config: dict[str, Any] | None = None
        #: The resolved ``model`` config this module was instantiated from (set by
        #: ``ganzoo.models.build_model``), saved in every checkpoint: ``load_checkpoint`` rebuilds
        #: the model from it.
        self.model_config: dict[str, Any] | None = None
        #: This batch's player losses, ``(optimizer, loss)`` in update order (read by the
        #: divergence guard; detached, so nothing is kept alive).
        self.batch_losses: list[tuple[Any, Tensor]] = []
        self._batch_ended = True
        #: Whether :meth:`_backward` calls ``loss.backward`` and :meth:`_optimizer_step` the
        #: optimizer directly (``plain_calls_suffice``).
        self._plain_backward = self._plain_step = False
        self._rng_to_restore: dict[str, Any] | None = None
        #: ``model.compile``: false, true, or ``torch.compile`` keyword arguments (a mapping).
        self.compile_networks = compile

    # --- model.compile -------------------------------------------------------------------

    def configure_model(self) -> None:
        """``model.compile``: every network wrapped in ``torch.compile`` before training, in place
        (``nn.Module.compile``: parameter names, hence checkpoints, stay those of the plain
        networks). A discriminator's ``forward_with_features`` (VAE/GAN) is compiled as well."""
        if not self.compile_networks or getattr(self, "_networks_compiled", False):
            return
        options = self.compile_networks if isinstance(self.compile_networks, Mapping) else {}
        for net in self.children():
            if isinstance(net, Prior) or net is self.ema:  # the averages stay plain copies
                continue
            net.compile(**options)
            if callable(getattr(net, "forward_with_features", None)):
                net.forward_with_features = torch.compile(net.forward_with_features, **options)
        self._networks_compiled = True

    # --- players and optimizers -----------------------------------------------------------

    def player_parameters(self, player: str) -> Iterable[nn.Parameter]:
        return getattr(self, player).parameters()

    def configure_optimizers(self):
        optimizers, schedulers = [], []
        for player in self.players:
            factory = self._optimizer_factories[player]
            opt = factory(list(self.player_parameters(player))) if callable(factory) else None
            if not isinstance(opt, torch.optim.Optimizer):
                raise TypeError(
                    f"model.optimizer.{player} must build a torch.optim.Optimizer from the "
                    "player's parameters (a config with _partial_: true)"
                )
            optimizers.append(opt)
            if player in self._scheduler_factories:
                scheduler = self._scheduler_factories[player](opt)
                schedulers.append({"scheduler": scheduler, "interval": "step"})
        return optimizers, schedulers

    def player_optimizers(self) -> dict[str, Any]:
        """The (Lightning-wrapped) optimizers by player name."""
        opts = self.optimizers()
        opts = opts if isinstance(opts, list) else [opts]
        return dict(zip(self.players, opts, strict=True))

    @property
    def restricted_backward(self) -> bool:
        """Whether each player's backward pass is restricted to its own parameters (``inputs``):
        on one device, yes; under DDP (any parallel strategy) no, since DDP's reducer expects a
        gradient hook of every parameter that took part in the forward pass."""
        return not (
            self._trainer is not None
            and isinstance(self.trainer.strategy, pl.strategies.ParallelStrategy)
        )

    @contextmanager
    def toggled_optimizer(self, optimizer) -> Iterator[None]:
        """Lightning's ``toggled_optimizer`` (the other players' parameters frozen), where it is
        needed: under DDP, whose backward passes are whole. On one device each backward is
        restricted to the player's parameters (:meth:`_backward`), so no other parameter can
        receive a gradient, and freezing them would only cost time (about 20 us per player step
        on the ring MLPs; the trained parameters are bit for bit the same, tested).
        """
        if self.restricted_backward:
            yield
            return
        with super().toggled_optimizer(optimizer):
            yield

    def _backward(self, opt, loss: Tensor, retain_graph: bool = False) -> None:
        """One player's gradient of ``loss``: zero its gradients, backward. Call it inside
        ``toggled_optimizer(opt)``, so that only that player's parameters receive a gradient.

        On one device the backward pass is restricted to the player's parameters (``inputs``):
        where several players' losses share one forward pass (VAE/GAN, the simultaneous GAN
        step), each backward then computes only the gradients its player needs, not every
        network's (freezing the others after the forward pass does not prune the graph; on
        ``vaegan_ring`` this took the step from 1.9x to about 1.1x the hand loop's time). Under
        DDP the backward stays whole, inside ``toggled_optimizer``.

        Where ``manual_backward`` would do nothing but ``loss.backward`` (see
        :meth:`plain_calls_suffice`), the backward is called directly.
        """
        self.batch_losses.append((opt, loss.detach()))
        params = []
        for group in opt.param_groups:
            for p in group["params"]:
                p.grad = None  # opt.zero_grad(set_to_none=True)
                if p.requires_grad:
                    params.append(p)
        if not self.restricted_backward:
            self.manual_backward(loss, retain_graph=retain_graph)
        elif not params:  # a player whose parameters are all frozen has no gradient to take
            return
        elif self._plain_backward:
            loss.backward(retain_graph=retain_graph, inputs=params)
        else:
            self.manual_backward(loss, retain_graph=retain_graph, inputs=params)

    def plain_calls_suffice(self) -> tuple[bool, bool]:
        """Whether Lightning's ``manual_backward`` would only call ``loss.backward``, and its
        optimizer wrapper's ``step`` only count the step and call ``optimizer.step``: one device,
        a precision plugin that neither scales nor casts (32-bit, or bf16 autocast), and no
        callback or module hook around either call.

        Each ``manual_backward`` passes the loss through the precision plugin and the
        ``on_before_backward`` / ``on_after_backward`` hooks of the module and of every callback;
        each ``step`` through the strategy, the precision plugin, ``on_before_optimizer_step``
        and gradient clipping: about 0.2 ms per player and batch on the ring MLPs (measured
        inside a running step on the CPU development machine), with nothing to do in ganzoo's
        shipped configs (docs/performance.md). Decided once per fit
        (``on_train_start``). A callback or module that uses one of those hooks, a gradient
        scaler (fp16), another strategy (DDP, XLA, DeepSpeed) or gradient clipping gets
        Lightning's calls, as before.
        """
        from lightning_utilities.core.overrides import is_overridden
        from pytorch_lightning.plugins.precision import MixedPrecision, Precision
        from pytorch_lightning.strategies import SingleDeviceStrategy

        trainer = self.trainer
        precision = trainer.precision_plugin
        plain = type(trainer.strategy) is SingleDeviceStrategy and (
            type(precision) is Precision
            or (type(precision) is MixedPrecision and precision.scaler is None)
        )

        def used(hook: str) -> bool:
            if is_overridden(hook, self, pl.LightningModule):
                return True
            for callback in trainer.callbacks:
                fn = getattr(callback, hook, None)
                if callable(fn) and (
                    hook in vars(callback) or is_overridden(hook, callback, pl.Callback)
                ):
                    return True
            return False

        backward = plain and not any(
            used(h) for h in ("backward", "on_before_backward", "on_after_backward")
        )
        step = (
            plain
            and not used("on_before_optimizer_step")
            and not is_overridden("configure_gradient_clipping", self, pl.LightningModule)
            and not trainer.gradient_clip_val
        )
        return backward, step

    def _optimizer_step(self, opt) -> None:
        """``opt.step()`` of a Lightning-wrapped optimizer; where Lightning's wrapper would only
        count the step (``plain_calls_suffice``), the count and the optimizer's own step."""
        if self._plain_step and hasattr(opt, "_on_before_step"):
            opt._on_before_step()  # the manual loop's step count (trainer.global_step)
            opt.optimizer.step()
            opt._on_after_step()
        else:
            opt.step()

    def _step(self, opt, loss: Tensor) -> None:
        """One optimizer step of one player on ``loss``: zero, backward, step."""
        self._backward(opt, loss)
        self._optimizer_step(opt)

    def player_of(self, opt) -> str:
        """The name of the player that ``opt`` (plain or Lightning-wrapped) updates."""
        inner = getattr(opt, "optimizer", opt)
        for player, candidate in self.player_optimizers().items():
            if candidate is opt or getattr(candidate, "optimizer", candidate) is inner:
                return player
        return "?"

    def on_train_batch_start(self, batch, batch_idx) -> None:
        self.batch_losses = []
        self._batch_ended = False
        trainer = self.trainer
        self._quiet_batch = not (
            trainer._logger_connector.should_update_logs
            or batch_idx == 0
            or trainer.fit_loop.epoch_loop.batch_progress.is_last_batch
        )

    @property
    def logs_this_batch(self) -> bool:
        """Whether this training batch's values are recorded (see :meth:`log`): families skip
        computing what they would only log when it is false."""
        quiet = getattr(self, "_quiet_batch", False)
        return not (quiet and self._trainer is not None and self.trainer.training)

    def on_train_end(self) -> None:
        self._quiet_batch = False

    def log(self, name: str, value: Any, *args: Any, **kwargs: Any) -> None:
        """``LightningModule.log``, except in a training batch whose logs Lightning does not
        write (it writes every ``trainer.log_every_n_steps``-th): then nothing is recorded.

        Per-batch ``self.log`` calls were the main cost of a small step beyond the networks'
        work (docs/performance.md). The first and last batch of every epoch are always recorded,
        so the progress line and ``callback_metrics`` always hold this epoch's values.
        """
        if not self.logs_this_batch and not kwargs.get("on_epoch"):
            return  # (an epoch aggregate still takes every batch's value)
        super().log(name, value, *args, **kwargs)

    def end_batch(self) -> None:
        """Book-keeping of a finished training batch, once: per-batch schedulers step, the batch
        is counted. Runs in ``on_train_batch_end``; ganzoo's callbacks that write a checkpoint
        at the end of a batch call it first (callback hooks run before the module's)."""
        if self._batch_ended:
            return
        self._batch_ended = True
        self._quiet_batch = False
        # Manual optimization leaves schedulers to us: per-batch schedules step here, once a batch.
        scheds = self.lr_schedulers()
        for sched in scheds if isinstance(scheds, list) else ([scheds] if scheds else []):
            sched.step()
        self.batches_seen += 1
        if self.ema is not None and self.batches_seen > self.ema_start:
            self._update_ema()

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        self.end_batch()

    def on_train_start(self) -> None:
        self._plain_backward, self._plain_step = self.plain_calls_suffice()
        self._ema_lists = None  # gathered again at the first average of this fit (see below)

    def on_fit_start(self) -> None:
        self._attach_ema()
        # Last hook before the training loop draws anything: a resumed fit continues the saved
        # random streams; a new one seeds this rank's (callbacks' on_fit_start ran before).
        if self._rng_to_restore is not None:
            set_rng_state(self._rng_to_restore)
            self._rng_to_restore = None
            return
        seed = (self.run_config or {}).get("seed")
        if seed is None:
            seed = os.environ.get("PL_GLOBAL_SEED")
        if seed is not None:
            seed_globals(noise_seed(int(seed), self.trainer.global_rank))

    def on_train_epoch_end(self) -> None:
        for player, opt in self.player_optimizers().items():
            self.log(f"train/lr_{player}", float(opt.param_groups[0]["lr"]))

    # --- the moving average of the sampling networks ---------------------------------------

    @property
    def ema_networks(self) -> tuple[str, ...]:
        """The networks averaged when ``model.ema.decay`` is set: G, and E for encoder families
        (never D or C)."""
        return ("generator", "encoder") if self.has_encoder else ("generator",)

    def _attach_ema(self) -> None:
        """Create the averaged copies (``torch.optim.swa_utils.AveragedModel``, buffers such as
        batch-norm statistics averaged too) once the networks exist."""
        if self.ema_decay is None or self.ema is not None:
            return
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        averages = {}
        for name in self.ema_networks:
            average = AveragedModel(
                getattr(self, name),
                multi_avg_fn=get_ema_multi_avg_fn(self.ema_decay),
                use_buffers=True,
            )
            average.requires_grad_(False)
            averages[name] = average
        self.ema = nn.ModuleDict(averages)
        self._ema_lists = None

    def _update_ema(self) -> None:
        """One step of every moving average, as ``AveragedModel.update_parameters`` with
        ``get_ema_multi_avg_fn`` takes it (a copy the first time, then ``lerp`` towards the
        network: the same operations, so the same numbers), on tensor lists gathered once per
        fit. Its walk over the modules and its host read of ``n_averaged`` at every call cost about
        as much again as the ``lerp``: on the ring G, 0.6-0.8 ms a call against 0.4 ms here."""
        if self._ema_lists is None:
            self._ema_lists = {}
            for name, average in self.ema.items():
                pairs = zip(
                    itertools.chain(average.module.parameters(), average.module.buffers()),
                    itertools.chain(
                        getattr(self, name).parameters(), getattr(self, name).buffers()
                    ),
                    strict=True,
                )
                floats: dict[tuple, tuple[list[Tensor], list[Tensor]]] = {}
                others = []
                for avg, net in pairs:
                    if avg.is_floating_point() or avg.is_complex():
                        lists = floats.setdefault((avg.device, avg.dtype), ([], []))
                        lists[0].append(avg.detach())
                        lists[1].append(net.detach())
                    else:  # (batch norm's num_batches_tracked)
                        others.append((avg.detach(), net.detach()))
                self._ema_lists[name] = (int(average.n_averaged), list(floats.values()), others)
        decay = self.ema_decay
        with torch.no_grad():
            for name, (count, floats, others) in self._ema_lists.items():
                for averages, nets in floats:
                    if count == 0:
                        torch._foreach_copy_(averages, nets)
                    else:
                        torch._foreach_lerp_(averages, nets, 1 - decay)
                for avg, net in others:
                    avg.copy_(net if count == 0 else avg * decay + net * (1 - decay))
                self.ema[name].n_averaged += 1
                self._ema_lists[name] = (count + 1, floats, others)

    def inference_network(self, name: str) -> nn.Module:
        """``name``'s network for sampling, grids and evaluation: its moving average once one
        exists and ``model.ema.use`` is true, else the trained network itself."""
        if self.ema is not None and self.use_ema and name in self.ema:
            average = self.ema[name]
            if int(average.n_averaged) > 0:
                return average.module
        return getattr(self, name)

    def ema_settings(self) -> dict[str, Any]:
        """What sampling uses, for every metric's protocol."""
        used = self.inference_network("generator") is not self.generator
        return {"decay": self.ema_decay, "start": self.ema_start, "used": used}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = rng_state()
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            states: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(states, state)  # every rank runs this hook when saving
        else:
            states = [state]
        checkpoint["ganzoo"] = {
            "format": CHECKPOINT_FORMAT,
            "family": type(self).__name__,
            "batches_seen": self.batches_seen,
            "run_config": self.run_config,
            "model": self.model_config,
            "rng": states,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get("ganzoo", {})
        family = saved.get("family")
        if family is not None and family != type(self).__name__:
            raise ValueError(
                f"this checkpoint holds a {family} model, not a {type(self).__name__}: "
                f"load it with ganzoo.models.{family}"
            )
        too_new = newer_format(saved)
        if too_new:
            raise ValueError(f"this checkpoint has {too_new}")
        self.batches_seen = int(saved.get("batches_seen", 0))
        self._attach_ema()  # before the state dict, which holds the averages, is loaded
        self.run_config = saved.get("run_config")
        # Resuming a fit: this rank's random state, restored in on_fit_start. A different number
        # of ranks, or a format-1 checkpoint, resumes with fresh per-rank seeds (not exactly).
        states = saved.get("rng") or []
        fitting = self._trainer is not None and self.trainer.state.fn == "fit"
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if fitting else (0, 1)
        self._rng_to_restore = states[rank] if fitting and len(states) == world else None

    # --- data ----------------------------------------------------------------------------

    @staticmethod
    def inputs(batch: Any) -> Tensor:
        """The data tensor of a batch: ``x`` or the first item of ``(x, y)``."""
        return batch[0] if isinstance(batch, (tuple, list)) else batch

    # --- the public API: usable after ``load_from_checkpoint`` ---------------------------

    @classmethod
    def load_from_checkpoint(
        cls, checkpoint_path: Any, map_location: Any = "cpu", **kwargs: Any
    ) -> GenerativeModel:
        """This family's model from a ganzoo checkpoint (:func:`ganzoo.models.load_checkpoint`:
        rebuilt from the model config the checkpoint carries), in eval mode. Lightning's
        ``strict``, ``weights_only`` and ``hparams_file`` are accepted and have no effect; other
        keyword arguments (Lightning's overrides of saved hyper-parameters) are refused."""
        from ganzoo.models import load_checkpoint  # ganzoo.models imports this module

        overrides = sorted(set(kwargs) - {"strict", "weights_only", "hparams_file"})
        if overrides:
            raise TypeError(
                f"{cls.__name__}.load_from_checkpoint does not override settings ({overrides}): "
                "load the model, or build another from the checkpoint's model config "
                '(torch.load(path)["ganzoo"]["model"]) with ganzoo.models.build_model'
            )

        model = load_checkpoint(checkpoint_path, map_location=map_location)
        if not isinstance(model, cls):
            raise ValueError(
                f"{checkpoint_path} holds a {type(model).__name__} model, not a {cls.__name__}: "
                "load it with ganzoo.models.load_checkpoint"
            )
        return model

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` samples ``G(z)``, ``z`` from the prior (in whatever mode the module is in)."""
        return self.generate(self.prior.sample(n, generator=generator))

    def generate(self, z: Tensor) -> Tensor:
        """Decode latents: ``G(z)`` (G's moving average when enabled, see ``inference_network``)."""
        return self.inference_network("generator")(z)

    #: Samples D judges as one: PacGAN's packing degree for GAN, 1 for every other family.
    judged_together: int = 1

    @torch.no_grad()
    def realness(self, x: Tensor) -> Tensor:
        """D's logits that samples are real, one per group of ``judged_together`` samples:
        ``(N // judged_together,)`` (read by discriminator rejection, ``ganzoo.rejection``)."""
        return self.judge(x)

    def judge(self, x: Tensor) -> Tensor:
        """``realness`` with gradients into D (discriminator rejection refines a copy of D)."""
        return self.judging_network()(x).reshape(-1)

    def judging_network(self) -> nn.Module:
        """The network behind ``judge``: D (an error for a family without one)."""
        discriminator = getattr(self, "discriminator", None)
        if discriminator is None:
            raise ValueError(
                f"{type(self).__name__} has no discriminator to reject with: evaluate it "
                "without rejection (drop rejection=...)"
            )
        return discriminator

    def encode(self, x: Tensor) -> Tensor:
        raise NotImplementedError(
            f"the {type(self).__name__} family has no encoder, so it cannot encode or reconstruct; "
            "use a VAEGAN or AlphaGAN checkpoint"
        )

    def reconstruct(self, x: Tensor) -> Tensor:
        return self.generate(self.encode(x))
