"""Hydra/OmegaConf glue: where the config tree lives and ganzoo's resolvers."""

from __future__ import annotations

from pathlib import Path

from omegaconf import ListConfig, OmegaConf


def config_dir() -> str:
    """The ``conf/`` tree: the repository's in a source checkout, else the copy in the wheel."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parents[1] / "conf", here / "conf"):
        if (candidate / "train.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(
        f"ganzoo's conf/ directory was not found next to {here}; reinstall ganzoo"
    )


def output_activation(value_range) -> str:
    """``_target_`` of the generator's output activation for a data value range: Sigmoid for
    [0, 1], Tanh for [-1, 1], Identity for unbounded data (``null``)."""
    if value_range is None:
        return "torch.nn.Identity"
    low, high = (float(v) for v in value_range)
    if (low, high) == (0.0, 1.0):
        return "torch.nn.Sigmoid"
    if (low, high) == (-1.0, 1.0):
        return "torch.nn.Tanh"
    raise ValueError(f"data.value_range must be [0, 1] or [-1, 1], got {list(value_range)}")


def train_batches(epochs, num_train, batch_size, held_out=0) -> int:
    """Training batches in ``epochs`` epochs of ``num_train`` samples less ``held_out`` (a
    validation split taken from them) at ``batch_size`` (the last, partial batch dropped, as the
    training loaders do): the length of a schedule that spans the whole run, e.g. ``total_iters``
    of a linear decay."""
    epochs, batch_size = int(epochs), int(batch_size)
    num_train = int(num_train) - int(held_out)
    if epochs < 1 or batch_size < 1 or num_train < batch_size:
        raise ValueError(
            f"ganzoo.train_batches needs epochs >= 1 and num_train - held_out >= batch_size >= 1, "
            f"got {epochs=}, num_train - held_out={num_train}, {batch_size=}"
        )
    return epochs * (num_train // batch_size)


def packed(shape_or_channels, pack=1):
    """What a discriminator sees of one sample under PacGAN's packing (``model.pack``): ``pack``
    samples concatenated along their first axis. A shape list gets its first entry multiplied,
    a channel count is multiplied."""
    pack = int(pack)
    if pack < 1:
        raise ValueError(f"model.pack (PacGAN's packing degree) must be >= 1, got {pack}")
    if isinstance(shape_or_channels, int):
        return shape_or_channels * pack
    shape = [int(v) for v in shape_or_channels]
    # A ListConfig, not a list: OmegaConf.resolve (--cfg job --resolve) takes only that.
    return ListConfig([shape[0] * pack, *shape[1:]])


def register_resolvers() -> None:
    OmegaConf.register_new_resolver("ganzoo.output_activation", output_activation, replace=True)
    OmegaConf.register_new_resolver("ganzoo.train_batches", train_batches, replace=True)
    OmegaConf.register_new_resolver("ganzoo.packed", packed, replace=True)


register_resolvers()


def report_user_errors(prog: str):
    """Decorate an entry point so configuration and data errors end the program with their message
    alone (exit status 1) instead of a traceback; ``HYDRA_FULL_ERROR=1`` shows the traceback."""
    import functools
    import os

    from hydra.errors import InstantiationException
    from omegaconf.errors import MissingMandatoryValue

    from ganzoo.data.base import DatasetMissingError

    user_errors = (
        DatasetMissingError,
        InstantiationException,
        MissingMandatoryValue,
        ValueError,
        KeyError,
        FileNotFoundError,
    )

    def wrap(fn):
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except user_errors as err:
                if os.environ.get("HYDRA_FULL_ERROR") == "1":
                    raise
                cause = (
                    err.__cause__
                    if isinstance(err, InstantiationException) and err.__cause__
                    else err
                )
                if isinstance(cause, MissingMandatoryValue) and cause.full_key:
                    key = cause.full_key
                    cause = f"{key} has no value (???): set it, e.g. {key}=<value>"
                raise SystemExit(f"{prog}: error: {cause}") from None

        return inner

    return wrap
