"""Training the `toy` preset on procedural clips, in the paper's stages (see `stages.py`)."""
