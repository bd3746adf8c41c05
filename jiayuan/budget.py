"""The early warning of a disk budget, shared by the edge spool and the gateway's spool."""

from __future__ import annotations


class BudgetWarning:
    """On once usage reaches ``fraction`` of a budget, off again once it falls below.

    ``crossed`` says when it has just come on, so a store logs one warning per crossing
    rather than one per write while it stays above the mark."""

    def __init__(self, fraction: float, setting: str) -> None:
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"{setting} must be in (0, 1], not {fraction}")
        self.fraction = fraction
        self.on = False

    def crossed(self, usage: float) -> bool:
        """Take the share of the budget in use; True when the warning has just come on."""
        was = self.on
        self.on = usage >= self.fraction
        return self.on and not was
