"""Stages of the StreamingT2V pipeline and the in-process (reference) executor. No Ray here."""
