"""Collection rules for the whole repository (the tests and the package's doctests).

The callbacks of ``sgdscope.integrations`` import their training framework, an optional extra; where
it is not installed their modules' doctests are not collected (their tests skip themselves).
"""

from __future__ import annotations

import importlib.util


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (
        ImportError,
        ValueError,
    ):  # a parent package missing, or a module blocked in sys.modules
        return False


collect_ignore = [
    f"src/sgdscope/integrations/{module}.py"
    for module, needs in (("lightning", "lightning.pytorch"), ("transformers", "transformers"))
    if not _installed(needs)
]
