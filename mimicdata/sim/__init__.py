"""Simulated robots that produce realistic deployment logs (C MuJoCo, imported lazily).

``simulate_deployment(seconds, rate_hz, robot, seed)`` yields the BeyondMimic controller's
``(observation, action)`` record pairs; :class:`G1DeployLoop` runs the same loop one step at a
time for callers that pace it themselves.
"""

from __future__ import annotations

from mimicdata.sim.g1_loop import ACTION_KEYS, OBSERVATION_KEYS, G1DeployLoop, obs_dim, simulate_deployment

__all__ = ["ACTION_KEYS", "OBSERVATION_KEYS", "G1DeployLoop", "obs_dim", "simulate_deployment"]
