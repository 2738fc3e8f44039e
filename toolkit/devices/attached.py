"""Choosing among attached phones (adb devices, iPhones): the one named, or the only one."""

from __future__ import annotations

from ..errors import BadInput, CannotMeasure


def choose_attached(found: list, ids: list[str], wanted: str | None, *, kind: str, what: str, id_name: str,
                    listing: list[str], hint: str):
    """The attached device whose id is `wanted`, or the only one attached."""
    names = ", ".join(listing) or "none"
    if wanted:
        if wanted not in ids:
            raise CannotMeasure(f"device '{kind}:{wanted}' is not attached (attached: {names})")
        return found[ids.index(wanted)]
    if not found:
        raise CannotMeasure(f"device '{kind}': no {what} is attached", hint=hint)
    if len(found) > 1:
        raise BadInput(f"device '{kind}': {len(found)} devices are attached ({names}); name one as {kind}:{id_name}")
    return found[0]
