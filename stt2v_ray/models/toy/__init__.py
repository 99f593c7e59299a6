"""The presets that run on a CPU: `toy` (this project's architecture at toy size, trained here,
weights shipped in stt2v_ray/weights/toy) and `tiny` (seeded random weights, for tests).
"""
