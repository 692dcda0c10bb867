"""The framework callbacks pass the Monitor's options through by name: each name the Monitor
takes (and none it does not) reaches it, names the callback sets itself are refused, and the
callbacks' docstrings list exactly the options that pass."""

import re

import pytest
import torch
from torch import nn

import sgdscope as sg
from sgdscope.integrations._common import MONITOR_OPTIONS, check_monitor_options

CALLBACKS = ["sgdscope.integrations.lightning", "sgdscope.integrations.transformers"]


def test_the_options_are_the_monitors_keywords_less_those_the_trainer_decides():
    assert "batch_size" not in MONITOR_OPTIONS and "resume_step" not in MONITOR_OPTIONS
    assert {"record_every", "measure_every", "k", "memory_budget", "seed"} <= set(MONITOR_OPTIONS)
    assert MONITOR_OPTIONS["k"] == 8 and MONITOR_OPTIONS["record_every"] == 1


def test_an_unknown_name_is_refused_with_the_names_that_pass():
    with pytest.raises(TypeError, match=r"'measure_evry' \(= 5\).*measure_every"):
        check_monitor_options({"measure_evry": 5}, where="cb")


def test_a_name_the_callback_sets_is_refused_with_the_reason():
    with pytest.raises(TypeError, match=r"sets the Monitor's 'batch_size' itself.*batch_size=64"):
        check_monitor_options({"batch_size": 64}, where="cb")


def test_the_options_build_a_monitor(tmp_path):
    # Every option, at a non-default value where one exists, is accepted by the Monitor itself.
    model = nn.Linear(3, 2)
    gen = torch.Generator().manual_seed(0)
    probe = (torch.randn(16, 3, generator=gen), torch.randint(0, 2, (16,), generator=gen))
    options = check_monitor_options(
        {"record_every": 2, "measure_every": 3, "k": 2, "seed": 1, "overhead": 0.1}, where="cb"
    )
    loss = nn.CrossEntropyLoss(reduction="none")
    with sg.Monitor(model, loss, probe, tmp_path / "run", **options) as monitor:
        assert (monitor.record_every, monitor.measure_every, monitor.k) == (2, 3, 2)


@pytest.mark.parametrize("module", CALLBACKS)
def test_the_docstring_lists_exactly_the_options_that_pass(module):
    mod = pytest.importorskip(module, reason="needs the framework (an optional extra)")
    doc = mod.SgdscopeCallback.__doc__
    block = doc[doc.index("**monitor_options:") : doc.index("Example:")]
    named = set(re.findall(r"``(\w+)``", block))
    assert named == set(MONITOR_OPTIONS)
    with pytest.raises(TypeError, match="unexpected keyword argument 'kk'"):
        mod.SgdscopeCallback("unused", None, None, kk=3)
