import hashlib

import pytest
import torch

from stt2v_ray.plan.seeds import derive_seed, frame_noise, generator, randn


def test_derive_seed_is_stable_and_63_bit():
    s = derive_seed(42, "base-noise", 3)
    assert s == derive_seed(42, "base-noise", 3)
    assert 0 <= s < 2**63
    # The encoding is part of the reproducibility contract: pin it.
    digest = hashlib.sha256(b'[42,"base-noise",3]').digest()
    assert s == int.from_bytes(digest[:8], "big") & (2**63 - 1)


def test_derive_seed_separates_keys():
    keys = [
        (1,),
        (2,),
        (1, "a"),
        (1, "b"),
        (1, "a", 1),
        (1, "a1"),
        (1, "a", "1"),
        (1, 1, "a"),
        (1, "a", 1, 2),
        (1, "a", 12),
        (1, "a,1"),
        (-1, "a"),
    ]
    seeds = [derive_seed(*k) for k in keys]
    assert len(set(seeds)) == len(keys)


def test_derive_seed_rejects_bad_parts():
    with pytest.raises(TypeError, match=r"purpose parts must be str or int, got 1.5 \(float\)"):
        derive_seed(1, 1.5)
    with pytest.raises(TypeError, match=r"purpose parts must be str or int, got True \(bool\)"):
        derive_seed(1, True)
    with pytest.raises(TypeError, match=r"seed must be an int, got '1' \(str\)"):
        derive_seed("1")


def test_generator_and_randn_follow_the_key():
    a = randn((2, 3), 7, "x", 1)
    b = randn((2, 3), 7, "x", 1)
    c = randn((2, 3), 7, "x", 2)
    assert a.shape == (2, 3) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    expected = torch.randn((2, 3), generator=torch.Generator().manual_seed(derive_seed(7, "x", 1)))
    assert torch.equal(a, expected)
    g = generator(7, "x", 1)
    assert g.initial_seed() == derive_seed(7, "x", 1)
    assert randn((4,), 7, "x", dtype=torch.float64).dtype == torch.float64


def test_randn_leaves_global_rng_untouched():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    randn((5,), 1, "y")
    assert torch.equal(torch.rand(3), expected)


def test_frame_noise_subset_equals_slice():
    full = frame_noise(5, "sdedit", range(21), (2, 4, 4))
    part = frame_noise(5, "sdedit", range(3, 11), (2, 4, 4))
    assert full.shape == (21, 2, 4, 4)
    assert part.shape == (8, 2, 4, 4)
    assert torch.equal(part, full[3:11])
    picked = frame_noise(5, "sdedit", [10, 0, 4], (2, 4, 4))
    assert torch.equal(picked, full[[10, 0, 4]])
    # Frames differ from each other and across purposes.
    assert not torch.equal(full[0], full[1])
    assert not torch.equal(frame_noise(5, "other", [0], (2, 4, 4))[0], full[0])


def test_frame_noise_empty_and_bad_indices():
    assert frame_noise(1, "p", [], (3, 2)).shape == (0, 3, 2)
    with pytest.raises(ValueError, match=r"frame indices must be ints >= 0, got -1 in \[0, -1\]"):
        frame_noise(1, "p", [0, -1], (3,))
