"""``python -m brokerguard``: the same command as ``brokerguard``."""

from brokerguard.cli import app

app(prog_name="brokerguard")
