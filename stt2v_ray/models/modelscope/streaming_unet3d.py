"""The streaming text-to-video UNet: a diffusers `UNet3DConditionModel` plus CAM and APM.

`StreamingUNet3D.forward` mirrors `UNet3DConditionModel.forward` (diffusers 0.42), calling the
UNet's own submodules, and adds the CAM injector residuals ControlNet-style: to every skip
connection and to the mid block output, never to the hidden state flowing down the encoder.
Without conditioning frames and image tokens it computes exactly what the base UNet computes.
"""
from __future__ import annotations

import torch
from diffusers import UNet3DConditionModel
from torch import Tensor, nn

from stt2v_ray.models.blocks.apm import APM
from stt2v_ray.models.blocks.cam import CAM
from stt2v_ray.models.blocks.text_time import text_time_condition


class StreamingUNet3D(nn.Module):
    def __init__(self, unet: UNet3DConditionModel, cam: CAM, apm: APM):
        super().__init__()
        self.unet, self.cam, self.apm = unet, cam, apm

    def forward(
        self,
        sample: Tensor,
        timestep: Tensor | float | int,
        text: Tensor,
        cond_frames: Tensor | None = None,
        image_tokens: Tensor | None = None,
    ) -> Tensor:
        """sample (B, c, F, h, w) noisy latents; text (B, n_text, D) text tokens;
        cond_frames (B, Fc, 3, H, W) pixel conditioning frames in [-1, 1] or None (no CAM);
        image_tokens (B, n_img, D) APM tokens or None (no APM) -> noise prediction (B, c, F, h, w)."""
        unet = self.unet
        batch, _, num_frames = sample.shape[:3]
        forward_upsample_size = any(s % 2**unet.num_upsamplers != 0 for s in sample.shape[-2:])
        upsample_size = None

        # 1. time
        if torch.is_tensor(timestep):
            timesteps = timestep[None].to(sample.device) if timestep.ndim == 0 else timestep
        else:
            dtype = torch.float64 if isinstance(timestep, float) else torch.int64
            timesteps = torch.tensor([timestep], dtype=dtype, device=sample.device)
        timesteps = timesteps.expand(batch)
        t_emb = unet.time_proj(timesteps).to(dtype=unet.dtype)
        emb = unet.time_embedding(t_emb, text_time_condition(unet.time_embedding, text))
        emb = emb.repeat_interleave(num_frames, dim=0, output_size=emb.shape[0] * num_frames)
        # the base UNet's spatial cross-attentions see text + image tokens; the CAM copy text only
        tokens = text if image_tokens is None else torch.cat([text, image_tokens], dim=1)
        tokens = tokens.repeat_interleave(num_frames, dim=0, output_size=tokens.shape[0] * num_frames)

        # 2. pre-process
        h = sample.permute(0, 2, 1, 3, 4).reshape((batch * num_frames, -1) + sample.shape[3:])  # (B*F, c, h, w)
        h = unet.conv_in(h)
        h = unet.transformer_in(h, num_frames=num_frames, return_dict=False)[0]

        # 3. down
        skips: tuple[Tensor, ...] = (h,)
        for block in unet.down_blocks:
            if getattr(block, "has_cross_attention", False):
                h, res = block(hidden_states=h, temb=emb, encoder_hidden_states=tokens, num_frames=num_frames)
            else:
                h, res = block(hidden_states=h, temb=emb, num_frames=num_frames)
            skips += res

        # 4. mid
        h = unet.mid_block(h, emb, encoder_hidden_states=tokens, num_frames=num_frames)

        # CAM: residuals on the skip connections and the mid block output
        if cond_frames is not None:
            num_cond = cond_frames.shape[1]
            if cond_frames.shape[0] != batch or num_cond > num_frames:
                raise ValueError(
                    f"StreamingUNet3D: cond_frames {tuple(cond_frames.shape)} must be (B={batch}, Fc<={num_frames}, 3, H, W)"
                )
            cam_skips, cam_mid = self.cam(sample[:, :, :num_cond], timesteps, text, cond_frames.flatten(0, 1))
            skips, h = self.cam.inject(skips, h, cam_skips, cam_mid, num_frames, num_cond)

        # 5. up
        for i, block in enumerate(unet.up_blocks):
            res = skips[-len(block.resnets) :]
            skips = skips[: -len(block.resnets)]
            if i < len(unet.up_blocks) - 1 and forward_upsample_size:
                upsample_size = skips[-1].shape[2:]
            if getattr(block, "has_cross_attention", False):
                h = block(
                    hidden_states=h, temb=emb, res_hidden_states_tuple=res, encoder_hidden_states=tokens,
                    upsample_size=upsample_size, num_frames=num_frames,
                )
            else:
                h = block(
                    hidden_states=h, temb=emb, res_hidden_states_tuple=res, upsample_size=upsample_size, num_frames=num_frames
                )

        # 6. post-process
        if unet.conv_norm_out is not None:
            h = unet.conv_act(unet.conv_norm_out(h))
        h = unet.conv_out(h)
        return h.reshape((batch, num_frames) + h.shape[1:]).permute(0, 2, 1, 3, 4)  # (B, c, F, h, w)
