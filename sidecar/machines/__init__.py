"""Machines orch can run work on: the embedded `local` machine, plain SSH hosts, EC2 and
Codespaces, behind one provider interface (`base.py`)."""
