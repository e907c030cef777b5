"""The detection core: state, detectors and policy behind the guard interface. No I/O."""

from brokerguard.engine.guard import BrokerGuard
from brokerguard.engine.policy import Policy, PolicyError, load_policy

__all__ = ["BrokerGuard", "Policy", "PolicyError", "load_policy"]
