"""The CLI explains itself: ``--help`` of each entry point names what there is to choose, in sync
with conf/ and the code, and its example commands compose."""

from __future__ import annotations

import contextlib
import importlib
import io
import re
import shlex
import sys
from pathlib import Path
from unittest import mock

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from ganzoo.config import config_dir
from ganzoo.inspection import MODES

CONF = Path(config_dir())
MODULES = {"train": "ganzoo.train", "eval": "ganzoo.evaluate", "sample": "ganzoo.sample"}


@pytest.fixture(scope="module")
def helps() -> dict[str, str]:
    """``--help`` of each entry point, run in-process as the console script would run it."""
    out = {}
    for name, module in MODULES.items():
        main = importlib.import_module(module).main
        stdout = io.StringIO()
        with (
            mock.patch.object(sys, "argv", [f"ganzoo-{name}", "--help"]),
            contextlib.redirect_stdout(stdout),
            pytest.raises(SystemExit) as exit_,
        ):
            main()
        assert exit_.value.code in (None, 0)
        out[name] = stdout.getvalue()
        GlobalHydra.instance().clear()
    return out


def section(text: str, title: str) -> list[str]:
    """The lines of the ``== <title> ...==`` section, up to the next section or blank line."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"== {title}"))
    body = []
    for line in lines[start + 1 :]:
        if not line.strip() or line.startswith("=="):
            break
        body.append(line)
    return body


def entries(lines: list[str]) -> list[str]:
    """First words of the entry lines (two-space indent; continuation lines are indented more)."""
    return [line.split()[0] for line in lines if re.match(r"^  \S", line)]


def stems(group: str) -> set[str]:
    return {p.stem for p in (CONF / group).glob("*.yaml")}


def test_train_help_lists_every_experiment_with_a_line_each(helps):
    listed = entries(section(helps["train"], "Experiments"))
    assert sorted(listed) == sorted(stems("experiment")), (
        "conf/hydra/help/train.yaml is out of sync with conf/experiment/: list each experiment "
        "once, with its one-line source"
    )
    for line in section(helps["train"], "Experiments"):
        assert len(line.split()) >= 4, f"no description: {line!r}"


def test_train_help_lists_families_groups_and_options(helps):
    text = helps["train"]
    assert sorted(entries(section(text, "Families"))) == sorted(stems("model"))
    groups = dict(
        line.split(": ", 1) for line in section(text, "Configuration groups") if ": " in line
    )
    for group in ("data", "model", "trainer", "logger", "callbacks", "hparams_search"):
        assert groups[group].split(", ") == sorted(stems(group)), group
    assert {"mlflow", "wandb"} <= set(groups["logger"].split(", "))
    assert groups["hparams_search/space"] == "alphagan, gan, vaegan"


def test_eval_help_lists_the_metric_options(helps):
    assert sorted(entries(section(helps["eval"], "Metrics"))) == sorted(stems("metrics"))


def test_eval_help_lists_every_sampler(helps):
    assert sorted(entries(section(helps["eval"], "Sampler"))) == sorted(stems("rejection")), (
        "conf/hydra/help/eval.yaml is out of sync with conf/rejection/: list each sampler"
    )


def test_sample_help_lists_every_mode(helps):
    assert entries(section(helps["sample"], "Modes")) == list(MODES)


@pytest.mark.parametrize("name", list(MODULES))
def test_help_has_three_examples_and_completion(helps, name):
    examples = section(helps[name], "Examples")
    assert len(examples) == 3 and all(e.startswith(f"  ganzoo-{name} ") for e in examples)
    assert f"ganzoo-{name} -sc install=bash" in helps[name]
    assert f"ganzoo-{name} --hydra-help" in helps[name]


def test_train_examples_compose(helps, fake_mnist):
    for example in section(helps["train"], "Examples"):
        args = [a for a in shlex.split(example)[1:] if a != "-m"]
        args = [a.replace("../shared/data", str(fake_mnist)) for a in args]
        GlobalHydra.instance().clear()
        try:
            with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
                compose("train", overrides=args)
        finally:
            GlobalHydra.instance().clear()


def test_study_help_lists_every_study():
    """``ganzoo-study --help`` (once conf/study.yaml selects ``override hydra/help: study``)."""
    study = pytest.importorskip("ganzoo.study", reason="ganzoo-study is not on this branch")
    if not (CONF / "study.yaml").is_file():
        pytest.skip("no conf/study.yaml")
    stdout = io.StringIO()
    with (
        mock.patch.object(sys, "argv", ["ganzoo-study", "--help"]),
        contextlib.redirect_stdout(stdout),
        pytest.raises(SystemExit),
    ):
        study.main()
    GlobalHydra.instance().clear()
    text = stdout.getvalue()
    assert sorted(entries(section(text, "Studies"))) == sorted(stems("study"))
    examples = section(text, "Examples")
    assert len(examples) == 3 and all(e.startswith("  ganzoo-study ") for e in examples)
    assert "ganzoo-study -sc install=bash" in text
