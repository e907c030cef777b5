"""One detector per defense point; each turns an event and the state into signals.

Detectors read only the events (what a broker logs) and their own state; they know nothing of
stores, HTTP or the simulator.
"""
