"""Idle stop: the agent orch runs on each machine, its policy, and the laptop-side service."""
