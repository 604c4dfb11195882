"""Every PPO variant bench/ppo.py ran still builds: its levers are known to bench/ppo_levers.py and its other settings
are product PPOConfig fields in range, so a row of bench/results/ppo.md can be run again."""
import pytest

from bench.ppo import VARIANTS
from bench.ppo_levers import LEVERS, split
from retrikt.config import RunConfig, override


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_a_variant_splits_into_known_levers_and_valid_config(variant):
    levers, settings = split(VARIANTS[variant][1])
    assert set(levers) == set(LEVERS)
    config = override(RunConfig(), {f"ppo.{k}": v for k, v in settings.items()})
    assert all(getattr(config.ppo, k) == v for k, v in settings.items())
