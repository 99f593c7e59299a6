"""Model families behind the `ChunkGenerator` / `ChunkEnhancer` contracts (docs/architecture.md).

Layered bottom up, each subpackage importing only those below it:
`blocks/` (generic parts) <- `svd/` (StreamingSVD) <- `modelscope/` (StreamingT2V, whose preset borrows
the SVD family's I2VGen-XL enhancer) <- `toy/` (the toy and tiny presets) <- `convert.py` (`stt2v-ray convert`).
"""
