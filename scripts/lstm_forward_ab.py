"""A/B of the bidirectional LSTM model's two forward paths on one device, same process.

`shortcut`: LSTMDirectionModel's CPU path (layer 0 with torch.lstm, the top layer's forward direction,
and the top reverse direction as one cell step: only the last step is used).
`fused`: nn.LSTM's full pass, `lstm(x)[0][:, -1, :]` (one cuDNN call on CUDA; the model's CUDA path).
Both compute the same function. Training steps (forward, backward, Adam) on fixed random windows; the
variants alternate in rounds so machine drift hits both. Prints JSON: samples/s per variant and batch.

Usage: PYTHONPATH=. python3 scripts/lstm_forward_ab.py [--device auto|cpu|cuda] [--batch-sizes 64 1024]
"""

from __future__ import annotations

import argparse
import json
import time
import types

import torch

from trading_assets.ml.fit import pick_device, train_step
from trading_assets.ml.models import LSTMDirectionModel


def shortcut_forward(self: LSTMDirectionModel, x: torch.Tensor) -> torch.Tensor:
    return self.fc(self.dropout(self._last_step_bidirectional(x))).squeeze(-1)


def fused_forward(self: LSTMDirectionModel, x: torch.Tensor) -> torch.Tensor:
    return self.fc(self.dropout(self.lstm(x)[0][:, -1, :])).squeeze(-1)


FORWARDS = {"shortcut": shortcut_forward, "fused": fused_forward}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(device: torch.device, batch: int, seq_len: int, steps: int, rounds: int) -> dict[str, float]:
    x = torch.randn(batch, seq_len, 31, device=device)
    y = (torch.rand(batch, device=device) > 0.5).float()
    variants = {}
    for name, forward in FORWARDS.items():
        torch.manual_seed(0)
        model = LSTMDirectionModel().to(device).train()
        model.forward = types.MethodType(forward, model)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        for _ in range(10):  # warm-up: kernels chosen, allocator filled
            train_step(model, optimizer, x, y)
        variants[name] = (model, optimizer)
    seconds = dict.fromkeys(variants, 0.0)
    for _ in range(rounds):
        for name, (model, optimizer) in variants.items():
            sync(device)
            started = time.perf_counter()
            for _ in range(steps):
                train_step(model, optimizer, x, y)
            sync(device)
            seconds[name] += time.perf_counter() - started
    return {name: round(rounds * steps * batch / spent, 1) for name, spent in seconds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 1024])
    parser.add_argument("--seq-len", type=int, default=60)
    parser.add_argument("--steps", type=int, default=50, help="training steps per variant and round")
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    device = pick_device(args.device)
    results = {
        f"batch_{batch}": measure(device, batch, args.seq_len, args.steps, args.rounds)
        for batch in args.batch_sizes
    }
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(json.dumps({"device": name, "torch": torch.__version__, "samples_per_s": results}, indent=2))


if __name__ == "__main__":
    main()
