"""The TorchScript twin of `engage_seq.data.aggregates`: one user's full-history aggregates,
computed inside the artifact's ``predict_events`` from the raw events before the cutoff.

Same definitions, same order, same float64 arithmetic as the Polars code that built the
training samples; export checks the two agree on the golden events and the unit tests on random
histories. Imports only torch: the artifact must load where engage_seq is not installed.
"""

import torch


def _log1p_hours(seconds: torch.Tensor) -> torch.Tensor:
    return (seconds.to(torch.float64) / 3600.0).log1p()


def _counts(
    age_seconds: torch.Tensor, selected: torch.Tensor, windows_days: list[int]
) -> list[torch.Tensor]:
    """log1p(count) of the ``selected`` events in each window, then over the whole history."""
    out: list[torch.Tensor] = []
    for days in windows_days:
        inside = selected & (age_seconds <= days * 86400)
        out.append(inside.sum().to(torch.float64).log1p())
    out.append(selected.sum().to(torch.float64).log1p())
    return out


def _signed_log1p(x: torch.Tensor) -> torch.Tensor:
    return x.sign() * x.abs().log1p()


def history_aggregates(
    history: torch.Tensor,  # (H,) int64 epoch seconds of the events before the cutoff, H >= 1
    is_target: list[torch.Tensor],  # per target type: (H,) bool, the event is of that type
    numeric: torch.Tensor,  # (H, F) float64 raw values; non-finite = missing
    cutoff: int,
    windows_days: list[int],
) -> torch.Tensor:  # (A,) float64, in the order of engage_seq.data.aggregates.aggregate_names
    """One user's aggregates: recency, tenure and counts, per target type recency (-1: never),
    counts and hours since the first one (-1: never), per numeric attribute signed_log1p of
    the sum and of the mean."""
    age_seconds = cutoff - history  # (H,) int64, > 0
    everything = torch.ones_like(history, dtype=torch.bool)
    out: list[torch.Tensor] = [_log1p_hours(age_seconds.min()), _log1p_hours(age_seconds.max())]
    out += _counts(age_seconds, everything, windows_days)
    for selected in is_target:
        never = torch.tensor(-1.0, dtype=torch.float64)
        found = bool(selected.any())
        out.append(_log1p_hours(age_seconds[selected].min()) if found else never)  # recency
        out += _counts(age_seconds, selected, windows_days)
        out.append(_log1p_hours(age_seconds[selected].max()) if found else never)  # first
    for column in range(int(numeric.size(1))):
        values = numeric[:, column].to(torch.float64)
        values = values[torch.isfinite(values)]
        total = values.sum()
        mean = total / values.numel() if values.numel() > 0 else torch.zeros_like(total)
        out += [_signed_log1p(total), _signed_log1p(mean)]
    return torch.stack(out)


def standardise_aggregates(
    raw: torch.Tensor, mean: torch.Tensor, std: torch.Tensor
) -> torch.Tensor:  # (A,) float64 -> (A,) float32
    """As in training: ``clip((value - mean) / std, -5, 5)`` in float64, then float32."""
    return ((raw - mean) / std).clamp(-5.0, 5.0).to(torch.float32)
