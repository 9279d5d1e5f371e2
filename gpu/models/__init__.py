"""The service's models: BiRefNet (written here) and SAM2 (through the `sam2` package)."""
