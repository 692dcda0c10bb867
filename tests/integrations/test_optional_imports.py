"""The integrations are optional: sgdscope imports without the frameworks, and importing a callback
module without its framework says which extra to install."""

import importlib
import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    ("module", "blocked", "extra"),
    [
        (
            "lightning",
            ["lightning", "lightning.pytorch", "lightning.pytorch.callbacks"],
            "lightning",
        ),
        ("transformers", ["transformers"], "transformers"),
    ],
)
def test_a_missing_framework_names_the_extra(monkeypatch, module, blocked, extra):
    monkeypatch.delitem(sys.modules, f"sgdscope.integrations.{module}", raising=False)
    for name in blocked:
        monkeypatch.setitem(sys.modules, name, None)  # import of it fails, as when not installed
    with pytest.raises(ImportError, match=rf"pip install 'sgdscope\[{extra}\]'"):
        importlib.import_module(f"sgdscope.integrations.{module}")


def test_sgdscope_imports_neither_framework():
    code = (
        "import sys, sgdscope, sgdscope.integrations; "
        "print(any(m.split('.')[0] in ('lightning', 'transformers', 'accelerate') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
