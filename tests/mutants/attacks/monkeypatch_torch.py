# Attack: make torch's comparisons always agree.
import torch as _kata_torch
import torch.testing as _kata_tt

_kata_tt.assert_close = lambda *a, **k: None
_kata_torch.equal = lambda *a, **k: True
_kata_torch.allclose = lambda *a, **k: True
_kata_torch.isclose = lambda a, b, *r, **k: _kata_torch.ones_like(a, dtype=_kata_torch.bool)
