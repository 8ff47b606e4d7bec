"""The state composer of saved generators: named parts under prefixes, and back."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st

from cellsynth.generators.state import compose_state, split_state

names = st.text("abc_", min_size=1, max_size=4)
parts = st.dictionaries(names, st.dictionaries(names, st.integers(), max_size=3), max_size=4)


@given(parts)
def test_split_inverts_compose_for_flat_parts(values):
    assert split_state(compose_state(values), values) == {name: dict(part) for name, part in values.items()}


def test_nested_parts_come_apart_and_arrays_become_tensors():
    flat = compose_state(
        {
            "levels": {"train": np.arange(3.0)},
            "levels.regression": {"beta": np.ones(2)},
            "net": {"layer.0.weight": torch.zeros(2)},
            "off": None,
        }
    )
    assert sorted(flat) == ["levels.regression.beta", "levels.train", "net.layer.0.weight"]
    assert isinstance(flat["levels.train"], torch.Tensor)
    parts = split_state(flat | {"loose": torch.ones(1)}, ("levels", "levels.regression", "net", "off"))
    assert list(parts["levels"]) == ["train"] and list(parts["levels.regression"]) == ["beta"]
    assert list(parts["net"]) == ["layer.0.weight"] and parts["off"] == {}
    np.testing.assert_array_equal(parts["levels"]["train"].numpy(), np.arange(3.0))
