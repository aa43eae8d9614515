"""Gymnasium environments of recal-gym (RouterQA-v0 and its variants and wrappers)."""
