"""stt2v-ray: StreamingT2V long-video rendering, in one process or on Ray clusters."""

__version__ = "0.1.0"
