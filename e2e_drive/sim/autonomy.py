"""NVIDIA's autonomy metric (Bojarski et al., 2016, "End to End Learning for Self-Driving Cars")."""

from __future__ import annotations

INTERVENTION_SECONDS = 6.0  # NVIDIA counts each intervention as six seconds of human driving


def autonomy(interventions: int, elapsed_seconds: float, penalty_seconds: float = INTERVENTION_SECONDS) -> float:
    """Percent of the time the car drove itself: ``(1 - interventions * 6 s / elapsed) * 100``.

    Not clipped: a run with more than one intervention per 6 s scores below 0,
    as the formula says.

    Example:
        >>> autonomy(10, 600.0)
        90.0
    """
    if elapsed_seconds <= 0:
        raise ValueError(f"Expected elapsed_seconds > 0. Received: elapsed_seconds={elapsed_seconds}")
    if interventions < 0:
        raise ValueError(f"Expected interventions >= 0. Received: interventions={interventions}")
    return (1.0 - interventions * penalty_seconds / elapsed_seconds) * 100.0
