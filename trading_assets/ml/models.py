"""Direction models: every `forward` returns logits; `predict_proba` applies the sigmoid.

`LSTMDirectionModel` is the old pipeline's printed architecture
    LSTM(31, 64, bidirectional=True, batch_first=True, num_layers=2, dropout=0.2) -> last step
    -> Dropout(0.2) -> Linear(128, 64) -> ReLU -> Dropout(0.2) -> Linear(64, 1) [-> sigmoid]
with 157,313 parameters (62,337 unidirectional). Its state_dict has the printed model's layout
(`lstm.*`, `fc.0.*`, `fc.3.*`). The bidirectional forward is an exact reimplementation that skips work
whose result is thrown away: only the last step of the top layer is used, and the top layer's reverse
direction reaches that step first, from a zero state, so it is one LSTM cell step instead of a full pass.
That shortcut is used on the CPU (1.3x the training throughput of the full pass); on CUDA the full pass is
one fused cuDNN kernel and the faster choice (1.34-1.39x the shortcut on an H200 at batch 64-1024,
`scripts/lstm_forward_ab.py`, bench-results/h200/lstm_forward_ab_cuda.json).

`TransformerDirectionModel`: Linear(F, 64) + sinusoidal positions -> 2 encoder layers (4 heads,
feed-forward 128, pre-norm) -> [last step, mean over time] -> Linear(128, 64) -> ReLU -> Dropout -> Linear(64, 1);
77,313 parameters for 31 features (head reads the last step and the mean of the encoded window).

`load_torch_model` turns a torch artifact back into a scorer (`TorchScorer`) for any torch model type.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from trading_assets.ml.config import TrainConfig
from trading_assets.ml.errors import ModelArtifactError

#: A torch model type's network for `features` inputs, shaped by the training config.
TorchBuilder = Callable[[int, TrainConfig], nn.Module]


class LSTMDirectionModel(nn.Module):
    def __init__(
        self, features: int = 31, hidden: int = 64, bidirectional: bool = True, dropout: float = 0.2
    ) -> None:
        super().__init__()
        self.lstm = nn.LSTM(
            features, hidden, num_layers=2, batch_first=True, bidirectional=bidirectional, dropout=dropout
        )
        self.dropout = nn.Dropout(dropout)
        width = hidden * (2 if bidirectional else 1)
        self.fc = nn.Sequential(nn.Linear(width, 64), nn.ReLU(), nn.Dropout(dropout), nn.Linear(64, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, seq_len, features) -> logits (batch,)."""
        if self.lstm.bidirectional and not x.is_cuda:
            last = self._last_step_bidirectional(x)
        else:  # on CUDA one fused cuDNN call beats the shortcut's three (scripts/lstm_forward_ab.py)
            last = self.lstm(x)[0][:, -1, :]
        return self.fc(self.dropout(last)).squeeze(-1)

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.forward(x))

    def _weights(self, suffix: str) -> list[torch.Tensor]:
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        return [getattr(self.lstm, f"{name}_{suffix}") for name in names]

    def _last_step_bidirectional(self, x: torch.Tensor) -> torch.Tensor:
        """Equal to `self.lstm(x)[0][:, -1, :]`, computing the top reverse direction for one step only."""
        batch, hidden = x.shape[0], self.lstm.hidden_size
        zeros2 = x.new_zeros(2, batch, hidden)
        weights0 = self._weights("l0") + self._weights("l0_reverse")
        out0 = torch.lstm(x, (zeros2, zeros2), weights0, True, 1, 0.0, self.training, True, True)[0]
        out0 = F.dropout(out0, self.lstm.dropout, self.training)
        zeros1 = x.new_zeros(1, batch, hidden)
        h_forward = torch.lstm(
            out0, (zeros1, zeros1), self._weights("l1"), True, 1, 0.0, self.training, False, True
        )[1][0]
        w_ih, _, b_ih, b_hh = self._weights("l1_reverse")
        gate_i, _, gate_g, gate_o = F.linear(out0[:, -1, :], w_ih, b_ih + b_hh).chunk(4, dim=1)
        cell = torch.sigmoid(gate_i) * torch.tanh(gate_g)
        h_reverse = torch.sigmoid(gate_o) * torch.tanh(cell)
        return torch.cat([h_forward, h_reverse], dim=1)


class SinusoidalPositions(nn.Module):
    def __init__(self, d_model: int, max_len: int = 4096) -> None:
        super().__init__()
        position = torch.arange(max_len, dtype=torch.float32)[:, None]
        scale = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10_000.0) / d_model))
        table = torch.zeros(max_len, d_model)
        table[:, 0::2] = torch.sin(position * scale)
        table[:, 1::2] = torch.cos(position * scale)
        self.register_buffer("table", table, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.table[: x.shape[1]]


class TransformerDirectionModel(nn.Module):
    """`patch` consecutive minutes form one token (the oldest `seq_len % patch` minutes are left out), so
    the encoder attends over seq_len / patch positions; patch 1 is one token per minute."""

    def __init__(
        self,
        features: int = 31,
        d_model: int = 64,
        heads: int = 4,
        layers: int = 2,
        dropout: float = 0.1,
        patch: int = 1,
    ) -> None:
        super().__init__()
        self.patch = patch
        self.embed = nn.Linear(features * patch, d_model)
        self.positions = SinusoidalPositions(d_model)
        layer = nn.TransformerEncoderLayer(
            d_model, heads, dim_feedforward=2 * d_model, dropout=dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Sequential(
            nn.Linear(2 * d_model, 64), nn.ReLU(), nn.Dropout(dropout), nn.Linear(64, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, seq_len, features) -> logits (batch,). Pooled: the last step's encoding and the mean."""
        tokens = x.shape[1] // self.patch
        patches = x[:, x.shape[1] - tokens * self.patch :].reshape(x.shape[0], tokens, -1)
        encoded = self.encoder(self.positions(self.embed(patches)))
        return self.head(torch.cat([encoded[:, -1], encoded.mean(dim=1)], dim=1)).squeeze(-1)

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.forward(x))


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@dataclass(frozen=True)
class TorchScorer:
    """A loaded torch network scoring windows in eval mode, batch by batch."""

    module: nn.Module
    batch_size: int = TrainConfig.eval_batch_size

    def logits(self, windows: np.ndarray) -> np.ndarray:
        return logits_in_batches(
            self.module, len(windows), self.batch_size, lambda start, stop: torch.tensor(windows[start:stop])
        )  # torch.tensor copies the read-only view


def logits_in_batches(
    module: nn.Module,
    count: int,
    batch_size: int,
    batch: Callable[[int, int], torch.Tensor],
    device: torch.device | None = None,
) -> np.ndarray:
    """Eval-mode logits of `count` windows, `batch(start, stop)` giving those of one batch, written into one
    array allocated up front. (Collected per batch, the small results pinned the top of the heap between
    the batches' multi-MB temporaries: scoring a test part at two years raised an LSTM training's peak RSS
    by up to ~400 MiB in some runs, `bench retrain`'s peak_rss_mb_by_phase.)"""
    module.eval()
    logits = torch.empty(count, device=device)
    with torch.no_grad():
        for start in range(0, count, batch_size):
            logits[start : start + batch_size] = module(batch(start, start + batch_size))
    return logits.cpu().numpy()


def load_torch_model(
    build: TorchBuilder,
    weights: dict[str, Any],
    manifest: dict[str, Any],
    config: TrainConfig,
    features: int,
    manifest_path: Path,
) -> TorchScorer:
    """The network `build` makes from the training config, checked against the manifest's architecture and
    parameter count, with the artifact's weights."""
    model = build(features, config)
    expected = manifest.get("architecture")
    if not isinstance(expected, dict) or "summary" not in expected:
        raise ModelArtifactError(f"{manifest_path}: manifest has no architecture summary")
    if str(model) != expected["summary"] or parameter_count(model) != manifest["parameter_count"]:
        raise ModelArtifactError(
            f"{manifest_path}: describes a {manifest['model_type']} of {manifest['parameter_count']:,} "
            f"parameters but its training config builds another architecture of {parameter_count(model):,}"
        )
    try:
        model.load_state_dict(weights)
    except RuntimeError as error:
        raise ModelArtifactError(
            f"{manifest_path.parent / manifest['weights_file']}: weights do not fit the manifest's architecture "
            f"({manifest['parameter_count']:,} parameters, {manifest['model_type']}): "
            + " ".join(str(error).split())[:300]
        ) from error
    return TorchScorer(model.eval())
