"""Parameter groups for per-group spectra: "layer", "module", or a dict of names / patterns."""

from __future__ import annotations

from fnmatch import fnmatchcase

from .._params import ParamLayout

__all__ = ["resolve_groups"]


def resolve_groups(layout: ParamLayout, groups, *, where: str) -> dict[str, list[str]]:
    """Map group name → parameter names (in layout order).

    Args:
        layout: The parameters that make up x.
        groups: ``"layer"`` (one group per module that owns parameters: ``fc.weight`` and
            ``fc.bias`` form ``fc``), ``"module"`` (one group per top-level child of the model),
            or a dict from group name to a list of parameter names or glob patterns
            (``{"attention": ["*.attn.*"]}``); groups may overlap.
        where: The caller, for error messages.

    Returns:
        ``{group name: parameter names}``, groups in the order found, names in layout order.

    Raises:
        ValueError: On an unknown rule, or a group that matches no selected parameter.
    """
    names = list(layout.names)
    if groups == "layer":
        key = lambda n: n.rpartition(".")[0] or n  # noqa: E731
    elif groups == "module":
        key = lambda n: n.split(".")[0]  # noqa: E731
    elif isinstance(groups, dict):
        out: dict[str, list[str]] = {}
        for group, patterns in groups.items():
            patterns = [patterns] if isinstance(patterns, str) else list(patterns)
            members = [n for n in names if any(fnmatchcase(n, p) for p in patterns)]
            if not members:
                raise ValueError(
                    f"the 'groups' parameter of {where}: group {group!r} ({patterns}) matches none of "
                    f"the parameters that make up x: {names[:8]}{' …' if len(names) > 8 else ''}."
                )
            out[str(group)] = members
        return out
    else:
        raise ValueError(
            f"the 'groups' parameter of {where} must be 'layer', 'module' or a dict from group name "
            f"to parameter names or glob patterns, got {groups!r}."
        )
    out = {}
    for n in names:
        out.setdefault(key(n), []).append(n)
    return out
