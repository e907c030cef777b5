"""BrokerGuard: protects online-broker customers from account takeover and unauthorized trading."""

__version__ = "0.1.0"
