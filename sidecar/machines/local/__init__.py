"""The embedded `local` machine: an asyncssh server on 127.0.0.1 (`server.py`, its own
process) and the provider that starts, stops and watches it (`provider.py`)."""
