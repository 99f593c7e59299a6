"""The ModelScope / StreamingT2V family: the text-to-video chunk generator (`t2v.py`), its
streaming UNet3D with CAM and APM, the `streamingt2v` preset's builders and the key mapping
of the official `streaming_t2v.ckpt` (`convert.py`).
"""
