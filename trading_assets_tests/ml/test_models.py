import pytest
import torch
from torch import nn

from trading_assets.ml.models import LSTMDirectionModel, TransformerDirectionModel, parameter_count


class PrintedModel(nn.Module):
    """The old pipeline's model as printed, with a plain bidirectional nn.LSTM, returning logits."""

    def __init__(self, bidirectional: bool = True, dropout: float = 0.2) -> None:
        super().__init__()
        self.lstm = nn.LSTM(
            31, 64, bidirectional=bidirectional, batch_first=True, num_layers=2, dropout=dropout
        )
        self.dropout = nn.Dropout(dropout)
        width = 128 if bidirectional else 64
        self.fc = nn.Sequential(nn.Linear(width, 64), nn.ReLU(), nn.Dropout(dropout), nn.Linear(64, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.lstm(x)[0][:, -1, :])).squeeze(-1)


def test_parameter_counts_of_printed_and_reported_architectures():
    assert parameter_count(LSTMDirectionModel(31, bidirectional=True)) == 157_313
    assert parameter_count(LSTMDirectionModel(31, bidirectional=False)) == 62_337
    assert parameter_count(TransformerDirectionModel(31)) == 77_313


@pytest.mark.parametrize("bidirectional", [True, False])
def test_state_dict_layout_matches_printed_model(bidirectional):
    ours, printed = LSTMDirectionModel(31, bidirectional=bidirectional), PrintedModel(bidirectional)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in printed.state_dict().items()
    }
    printed.load_state_dict(ours.state_dict())


def test_shortcut_forward_and_gradients_equal_plain_bidirectional_lstm():
    torch.manual_seed(1)
    ours, printed = LSTMDirectionModel(31, dropout=0.0), PrintedModel(dropout=0.0)
    printed.load_state_dict(ours.state_dict())
    x = torch.randn(7, 60, 31)
    ours.train(), printed.train()
    ours(x).sum().backward()
    printed(x).sum().backward()
    for (name, a), b in zip(ours.named_parameters(), printed.parameters(), strict=True):
        # weight_hh_l1_reverse only ever multiplies the zero initial state: its gradient is zero (None here)
        ours_grad = torch.zeros_like(a) if a.grad is None else a.grad
        torch.testing.assert_close(ours_grad, b.grad, atol=1e-5, rtol=1e-4, msg=name)
    ours.eval(), printed.eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(x), printed(x), atol=1e-5, rtol=0)


def test_eval_outputs_equal_with_default_dropout_and_proba_is_sigmoid_of_logits():
    torch.manual_seed(2)
    ours, printed = LSTMDirectionModel(31).eval(), PrintedModel().eval()
    printed.load_state_dict(ours.state_dict())
    x = torch.randn(5, 60, 31)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), printed(x), atol=1e-5, rtol=0)
        torch.testing.assert_close(ours.predict_proba(x), torch.sigmoid(printed(x)), atol=1e-6, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_fused_cuda_path_equals_the_cpu_shortcut():
    torch.manual_seed(3)
    model = LSTMDirectionModel(31).eval()
    x = torch.randn(9, 60, 31)
    with torch.no_grad():
        on_cpu = model(x)
        on_gpu = model.cuda()(x.cuda()).cpu()
    torch.testing.assert_close(on_gpu, on_cpu, atol=1e-4, rtol=0)


def test_transformer_returns_one_logit_per_window():
    model = TransformerDirectionModel(6).eval()
    with torch.no_grad():
        out = model(torch.randn(3, 20, 6))
    assert out.shape == (3,)
    assert torch.all(
        (model.predict_proba(torch.randn(3, 20, 6)) > 0) & (model.predict_proba(torch.randn(3, 20, 6)) < 1)
    )


def test_patch_tokens_read_consecutive_minutes_and_leave_the_oldest_remainder_out():
    model = TransformerDirectionModel(6, patch=5).eval()
    assert model.embed.in_features == 30
    windows = torch.randn(3, 22, 6)
    with torch.no_grad():
        assert torch.equal(model(windows), model(windows[:, 2:]))  # 22 minutes = 4 tokens + 2 left out
        changed = windows.clone()
        changed[:, -1] += 1.0  # the last minute is in the last token
        assert not torch.equal(model(changed), model(windows))
    assert parameter_count(TransformerDirectionModel(31, patch=1)) == 77_313
