"""Integration tests that need a running vLLM server (marked ``integration``)."""
