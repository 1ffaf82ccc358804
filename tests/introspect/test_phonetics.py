"""Phonetic agreement of profile clustering: planted structure is found, noise is not."""

from __future__ import annotations

import numpy as np
import pytest

from neurolake.errors import SpecError
from neurolake.introspect.phonetics import ARPABET_IPA, agreement, articulatory_vectors

PHONES = ["AA", "IY", "UW", "EH", "S", "Z", "SH", "F", "V", "P", "B", "T", "D", "K", "G", "M", "N", "NG"]


def test_articulatory_vectors_tell_voicing_and_place():
    v = articulatory_vectors(["S", "Z", "SH", "AA", "AY"])
    assert v.shape == (5, 24)
    d = lambda a, b: np.linalg.norm(v[a] - v[b])
    assert d(0, 1) < d(0, 3) and d(0, 2) < d(0, 3)  # s is nearer z and sh than a vowel
    assert set(ARPABET_IPA) >= set(PHONES)
    with pytest.raises(SpecError, match="not an ARPAbet phone"):
        articulatory_vectors(["S0"])


def test_profiles_that_carry_the_features_agree_and_noise_does_not():
    rng = np.random.default_rng(0)
    features = articulatory_vectors(PHONES)
    # 200 units, each a random mix of the features, plus noise: the profile geometry is phonetic
    mixing = rng.standard_normal((24, 200))
    planted = agreement(features @ mixing + 0.5 * rng.standard_normal((len(PHONES), 200)), PHONES, permutations=499)
    assert planted.r > 0.5 and planted.p_value <= 0.01
    noise = agreement(rng.standard_normal((len(PHONES), 200)), PHONES, permutations=499)
    assert noise.p_value > 0.05 and abs(noise.r) < planted.r / 2
    with pytest.raises(SpecError, match="at least 4 phones"):
        agreement(np.zeros((3, 5)), ["S", "Z", "F"])
