"""The SVD / StreamingSVD family: the image-to-video chunk generator (`i2v.py`), the
spatio-temporal UNet with CAM (`streaming_unet_stc.py`, `svd_cam.py` in the official layout),
the `streamingsvd` preset (`configs.py`, `streamingsvd.py`), the I2VGen-XL enhancer, the SDXL
first frame and the key mapping of the official checkpoint (`convert.py`).
"""
