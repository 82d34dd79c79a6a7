"""BG/NBD features inside the model (``model.btyd_features``): what a buy-till-you-die model
knows about each user, as two more inputs of the aggregates' projection.

On a purchase log under drift the BG/NBD model is the one to beat (docs/results.md): its
posterior P(alive) and P(a purchase within the horizon) are smooth functions of the summary
(x, t_x, T) that an MLP on log-counts and log-hours has to learn from data and does not quite.
So the model computes them itself, in closed form, from parameters fitted by maximum likelihood
on the training histories (`engage_seq.experiments.hybrid`), and the head learns how much to
trust them next to everything else. The parameters are fixed buffers, not trained: the
features are the textbook model's, and a refit refits them on the newest cutoff.

The summary is recovered from the standardised aggregates ``first_h/<t>``, ``recency_h/<t>``
and ``count_all/<t>`` (`engage_seq.data.aggregates`) by undoing their standardisation, so the
same layer runs at training, in ``engage-score`` and inside the TorchScript artifact with no
input of its own. Birth is the first event of type t (the textbook "first purchase"); a user
with none gets zeros. Imports only torch: exported.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

LOGIT_CLIP = 10.0  # |logit P(any)| and -log P(alive) are capped: P in [4.5e-5, 1 - 4.5e-5]


class BTYDFeatures(nn.Module):
    """(B, A) standardised aggregates -> (B, 2 * n_targets) float32: per target
    logit P(at least one within the horizon) and log P(alive), both capped at ±10."""

    def __init__(self, spec: dict[str, Any] | None) -> None:
        super().__init__()
        targets = (spec or {}).get("targets", [])
        self.n_features = 2 * len(targets)
        self.horizon_days = float((spec or {}).get("horizon_days", 1.0))
        self.clip = LOGIT_CLIP  # an attribute: TorchScript does not read module globals
        n = len(targets)
        rows = [row for t in targets for row in t["inputs"]]  # 3 per target: index, mean, std

        def column(k: int, dtype: torch.dtype) -> torch.Tensor:  # (n, 3), its own storage
            return torch.tensor([row[k] for row in rows], dtype=dtype).reshape(n, 3)

        params = torch.tensor([t["params"] for t in targets], dtype=torch.float64).reshape(n, 4)
        # not persistent: rebuilt from model_config, so older checkpoints keep their keys
        self.register_buffer("params", params, persistent=False)  # (n, 4) r, alpha, a, b
        self.register_buffer("index", column(0, torch.long), persistent=False)  # (n, 3)
        self.register_buffer("mean", column(1, torch.float64), persistent=False)  # (n, 3)
        self.register_buffer("std", column(2, torch.float64), persistent=False)  # (n, 3)

    def forward(self, aggregates: torch.Tensor) -> torch.Tensor:  # (B, A) -> (B, 2n)
        if self.n_features == 0:
            return aggregates.new_zeros(aggregates.shape[0], 0)
        z = aggregates.to(torch.float64)[:, self.index]  # (B, n, 3)
        raw = z * self.std + self.mean  # (B, n, 3) log1p values, -1 = never
        first_days = torch.expm1(raw[:, :, 0]).clamp(min=0.0) / 24.0  # (B, n) T
        last_days = torch.expm1(raw[:, :, 1]).clamp(min=0.0) / 24.0  # (B, n)
        count = torch.expm1(raw[:, :, 2]).round().clamp(min=0.0)  # (B, n) events of type t
        x = (count - 1.0).clamp(min=0.0)  # (B, n) repeat events after the first
        age = first_days  # T: birth (the first event of type t) to the cutoff
        t_x = (first_days - last_days).clamp(min=0.0)  # <= T, as last_days >= 0
        r, alpha = self.params[:, 0], self.params[:, 1]  # (n,)
        a, b = self.params[:, 2], self.params[:, 3]
        log_odds_dead = (
            torch.log(a)
            - torch.log((b + x - 1.0).clamp(min=1e-300))
            + (r + x) * (torch.log(alpha + age) - torch.log(alpha + t_x))
        )  # (B, n); only for x > 0: without a repeat event there is nothing to drop out after
        log_alive = torch.where(
            x > 0, -torch.nn.functional.softplus(log_odds_dead), torch.zeros_like(x)
        )
        none_if_alive = (r + x) * torch.log1p(self.horizon_days / (alpha + age))  # (B, n)
        log_any = log_alive + torch.log((-torch.expm1(-none_if_alive)).clamp(min=1e-300))
        log_not_any = torch.log1p(-torch.exp(log_any).clamp(max=1.0 - 1e-12))
        logit_any = (log_any - log_not_any).clamp(-self.clip, self.clip)
        log_alive = log_alive.clamp(min=-self.clip)
        seen = count >= 1.0  # (B, n) the user had an event of type t
        features = torch.stack([logit_any, log_alive], dim=-1)  # (B, n, 2)
        features = torch.where(seen.unsqueeze(-1), features, torch.zeros_like(features))
        return features.reshape(features.shape[0], -1).to(torch.float32)  # (B, 2n)
