"""Generic building blocks shared by every family: CAM, APM, text in the time embedding,
the SDEdit `VideoEnhancer`, memory modes, `GenerationJob`, the tiny CLIP text encoder and the
pixel-shuffle VAE (used by the random-weight builders of every family), weight resolution,
safe checkpoint reading and sharded safetensors exports. Imports no family.
"""
