"""The `streamingsvd` preset's architectures as configs: the published sizes and the toy sizes.

Plain data, apart from the preset's builders (`streamingsvd.py`), so the checkpoint key mapping
(`convert.py`) can read them without importing the builders, which import the mapping.
"""

# stabilityai/stable-video-diffusion-img2vid-xt unet/config.json (= diffusers' class defaults)
SVD_XT_UNET = dict(
    sample_size=96, in_channels=8, out_channels=4,
    down_block_types=("CrossAttnDownBlockSpatioTemporal",) * 3 + ("DownBlockSpatioTemporal",),
    up_block_types=("UpBlockSpatioTemporal",) + ("CrossAttnUpBlockSpatioTemporal",) * 3,
    block_out_channels=(320, 640, 1280, 1280), addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=768, layers_per_block=2, cross_attention_dim=1024,
    transformer_layers_per_block=1, num_attention_heads=(5, 10, 20, 20), num_frames=25,
)
SVD_XT_VAE = dict(  # vae/config.json: the SD VAE encoder + a temporal decoder
    in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4, sample_size=768,
    scaling_factor=0.18215, force_upcast=True,
)
SVD_XT_IMAGE_ENCODER = dict(  # image_encoder/config.json: OpenCLIP ViT-H/14 as CLIPVisionModelWithProjection
    hidden_size=1280, intermediate_size=5120, projection_dim=1024, num_hidden_layers=32,
    num_attention_heads=16, image_size=224, patch_size=14, hidden_act="gelu", layer_norm_eps=1e-5,
)
CAM_FRAME_CHANNELS = (32, 96, 256, 512)  # conditioning_embedding_out_channels in code/config.yaml

TOY_UNET = dict(
    in_channels=8, out_channels=4,
    down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
    up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
    block_out_channels=(32, 64), layers_per_block=1, cross_attention_dim=32, num_attention_heads=(2, 4),
    addition_time_embed_dim=8, projection_class_embeddings_input_dim=24, num_frames=8,
)
# layers_per_block=2 as the real VAE: diffusers' temporal decoder mid block has layers_per_block resnets (the
# original always has block_1, attn_1, block_2), so 1 would drop a resnet and the attention
TOY_VAE = dict(
    block_out_channels=(32, 32, 32), down_block_types=("DownEncoderBlock2D",) * 3, layers_per_block=2, latent_channels=4
)
TOY_IMAGE_ENCODER = dict(hidden_size=32, intermediate_size=37, projection_dim=32, num_hidden_layers=2,
                         num_attention_heads=4, image_size=32, patch_size=8)
TOY_FRAME_CHANNELS = (16, 32, 32)  # two stride-2 transitions: the toy VAE's factor 4
