"""EMA-VFI network (Zhang et al., CVPR 2023): the StreamingSVD preset's 2x frame interpolation.

Our own PyTorch code of the network in MCG-NJU/EMA-VFI (vendored by StreamingT2V `main` under
code/i2v_enhance/thirdparty/VFI), with the same module tree and parameter names, so the official
`ours.pkl` loads strictly after this key mapping (`convert_official_state_dict`):
  * `module.<name>` -> `<name>`: the file was saved from a DistributedDataParallel wrapper;
  * `module.feature_bone.block{4,5}.{j}.attn_mask` / `.HW` are dropped: the original caches the
    shifted-window mask of the last input size as buffers; they are not weights (its own loader
    drops them too). We compute masks per call instead.
Every other key must match a parameter by name and shape, and every parameter must be present
(loading lives in `stt2v_ray.video.ema_vfi`).

Network: a CNN+Transformer feature extractor (`MotionFormer`): three conv stages, then two stages
of windowed inter-frame attention whose attention map gives both appearance (frame A attends to
frame B) and motion (the attention-weighted displacement of pixel coordinates); two flow heads,
coarse to fine, predict bidirectional flow + a blend mask; a U-Net refines the warped blend.
It works on [0,1] BGR images (trained on cv2 frames) with sides a multiple of 32.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class EMAVFIConfig:
    """`init_model_config(F, W, depth)` of the original. arbitrary_timestep: the `_t` checkpoints
    (same network, trained for any t); `ours.pkl` was trained for t = 0.5 only."""

    F: int = 32
    window: int = 7
    depths: tuple[int, int, int, int, int] = (2, 2, 2, 4, 4)
    arbitrary_timestep: bool = False

    def __post_init__(self):
        if self.F < 4 or self.F % 4 or len(self.depths) != 5 or min(self.depths) < 1:
            raise ValueError(f"EMA-VFI needs F a multiple of 4 and 5 depths >= 1, got F={self.F}, depths={self.depths}")
        for d in self.depths[3:]:
            if 32 % d:  # motion dims (8F/d, 16F/d) must split evenly over heads of width 32
                raise ValueError(f"EMA-VFI attention-stage depths must divide 32, got {self.depths[3:]}")

    @property
    def embed_dims(self) -> list[int]:
        return [self.F, 2 * self.F, 4 * self.F, 8 * self.F, 16 * self.F]

    @property
    def motion_dims(self) -> list[int]:
        return [0, 0, 0, 8 * self.F // self.depths[3], 16 * self.F // self.depths[4]]

    @property
    def num_heads(self) -> list[int]:
        return [8 * self.F // 32, 16 * self.F // 32]


EMA_VFI_OURS = EMAVFIConfig()  # `ours.pkl`: F=32, W=7, depth [2,2,2,4,4]
EMA_VFI_TOY = EMAVFIConfig(F=8, depths=(1, 1, 1, 2, 2), arbitrary_timestep=True)  # tests


def _conv(cin: int, cout: int, k: int = 3, stride: int = 1, pad: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, pad), nn.PReLU(cout))


def _windows(x: Tensor, ws: int) -> Tensor:
    """(N, H, W, C) -> (N * H/ws * W/ws, ws*ws, C), batch-major."""
    n, h, w, c = x.shape
    x = x.view(n, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, ws * ws, c)


def _unwindows(x: Tensor, ws: int, h: int, w: int) -> Tensor:
    c = x.shape[-1]
    x = x.view(-1, h // ws, w // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, h, w, c)


def _region_mask(h: int, w: int, hs: tuple, wsl: tuple, ws: int, device) -> Tensor:
    """-100 between tokens of different labelled regions inside a window, else 0: (nW, N, N)."""
    labels = torch.zeros(1, h, w, 1, device=device)
    for i, (sh, sw) in enumerate((a, b) for a in hs for b in wsl):
        labels[:, sh, sw] = i
    lab = _windows(labels, ws).squeeze(-1)
    return (lab.unsqueeze(1) != lab.unsqueeze(2)).float() * -100.0


class DWConv(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)

    def forward(self, x: Tensor, h: int, w: int) -> Tensor:
        n, _, c = x.shape
        return self.dwconv(x.transpose(1, 2).reshape(n, c, h, w)).flatten(2).transpose(1, 2)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.dwconv, self.act, self.fc2 = nn.Linear(dim, hidden), DWConv(hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x: Tensor, h: int, w: int) -> Tensor:
        return self.fc2(self.act(self.dwconv(self.fc1(x), h, w)))


class InterFrameAttention(nn.Module):
    """Queries from one frame, keys/values from the other; the same attention map moves the
    pixel-coordinate embedding, whose change is the motion feature."""

    def __init__(self, dim: int, motion_dim: int, heads: int):
        super().__init__()
        self.heads, self.motion_dim, self.scale = heads, motion_dim, (dim // heads) ** -0.5
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.cor_embed = nn.Linear(2, motion_dim)
        self.proj = nn.Linear(dim, dim)
        self.motion_proj = nn.Linear(motion_dim, motion_dim)

    def forward(self, x1: Tensor, x2: Tensor, cor: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
        b, n, c = x1.shape  # b = windows of both frames
        h = self.heads
        q = self.q(x1).view(b, n, h, c // h).transpose(1, 2)
        k, v = self.kv(x2).view(b, n, 2, h, c // h).permute(2, 0, 3, 1, 4)
        cor_flat = self.cor_embed(cor)  # (b, n, motion_dim)
        cor_h = cor_flat.view(b, n, h, self.motion_dim // h).transpose(1, 2)
        attn = (q @ k.transpose(-2, -1)) * self.scale  # (b, h, n, n)
        if mask is not None:
            nw = mask.shape[0]
            attn = (attn.view(b // nw, nw, h, n, n) + mask[None, :, None]).view(b, h, n, n)
        attn = attn.softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(b, n, c)
        moved = (attn @ cor_h).transpose(1, 2).reshape(b, n, -1)
        return self.proj(x), self.motion_proj(moved - cor_flat)


class MotionFormerBlock(nn.Module):
    def __init__(self, dim: int, motion_dim: int, heads: int, window: int, shift: int):
        super().__init__()
        self.window, self.shift = window, shift
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = InterFrameAttention(dim, motion_dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, 4 * dim)

    def _mask(self, h: int, w: int, hp: int, wp: int, device) -> Tensor | None:
        ws, s = self.window, self.shift
        mask = None
        if hp != h or wp != w:  # centre padding: padded tokens do not attend to the image
            ph, pw = hp - h, wp - w
            cut = lambda p, n: (slice(0, p // 2), slice(p // 2, n + p // 2), slice(n + p // 2, None))  # noqa: E731
            mask = _region_mask(hp, wp, cut(ph, h), cut(pw, w), ws, device)
        if s:  # rolled windows: tokens wrapped around from the far side stay apart
            cut = (slice(0, -ws), slice(-ws, -s), slice(-s, None))
            shifted = _region_mask(hp, wp, cut, cut, ws, device)
            # As the original: the padding mask (unrolled coordinates) is OR-ed in as is.
            mask = shifted if mask is None else shifted.masked_fill(mask != 0, -100.0)
        return mask

    def forward(self, x: Tensor, cor: Tensor, h: int, w: int) -> tuple[Tensor, Tensor]:
        # 1. Tokens (2B, h*w, C) -> maps, centre-padded to whole windows (x and coordinates alike).
        n2 = x.shape[0]
        ws = self.window
        hp, wp = math.ceil(h / ws) * ws, math.ceil(w / ws) * ws
        pad = (0, 0, (wp - w) // 2, (wp - w) - (wp - w) // 2, (hp - h) // 2, (hp - h) - (hp - h) // 2)
        xp = F.pad(x.view(n2, h, w, -1), pad)
        cp = F.pad(cor, pad)
        mask = self._mask(h, w, hp, wp, x.device)
        if self.shift:
            xp = torch.roll(xp, (-self.shift, -self.shift), dims=(1, 2))
            cp = torch.roll(cp, (-self.shift, -self.shift), dims=(1, 2))
        # 2. Inter-frame attention per window: frame A's windows query frame B's and vice versa.
        xw = self.norm1(_windows(xp, ws))
        half = xw.shape[0] // 2
        app, motion = self.attn(xw, torch.cat([xw[half:], xw[:half]]), _windows(cp, ws), mask)
        xw = xw + app  # the residual adds to the normalised tokens, as in the original
        # 3. Back to maps, unroll, crop the padding.
        xm, mm = _unwindows(xw, ws, hp, wp), _unwindows(motion, ws, hp, wp)
        if self.shift:
            xm = torch.roll(xm, (self.shift, self.shift), dims=(1, 2))
            mm = torch.roll(mm, (self.shift, self.shift), dims=(1, 2))
        top, left = (hp - h) // 2, (wp - w) // 2
        x = xm[:, top : top + h, left : left + w].reshape(n2, h * w, -1)
        motion = mm[:, top : top + h, left : left + w].reshape(n2, h * w, -1)
        return x + self.mlp(self.norm2(x), h, w), motion


class CrossScalePatchEmbed(nn.Module):
    """Tokens at 1/8 from all three conv stages: dilated stride convs (1, 2, 4 of them per scale)."""

    def __init__(self, in_dims: list[int], dim: int):
        super().__init__()
        base = in_dims[0]
        self.layers = nn.ModuleList(
            nn.Conv2d(in_dims[-1 - i], base, 3, 2 ** (i + 1), 1 + j, 1 + j) for i in range(len(in_dims)) for j in range(2**i)
        )
        self.proj = nn.Conv2d(base * len(self.layers), dim, 1)
        self.norm = nn.LayerNorm(dim)

    def forward(self, xs: list[Tensor]) -> tuple[Tensor, int, int]:
        ys, k = [], 0
        for i in range(len(xs)):
            for _ in range(2**i):
                ys.append(self.layers[k](xs[-1 - i]))
                k += 1
        x = self.proj(torch.cat(ys, 1))
        h, w = x.shape[-2:]
        return self.norm(x.flatten(2).transpose(1, 2)), h, w


class OverlapPatchEmbed(nn.Module):
    def __init__(self, cin: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(cin, dim, 3, 2, 1)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> tuple[Tensor, int, int]:
        x = self.proj(x)
        h, w = x.shape[-2:]
        return self.norm(x.flatten(2).transpose(1, 2)), h, w


class ConvBlock(nn.Module):
    def __init__(self, cin: int, cout: int, depth: int):
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(depth):
            layers += [nn.Conv2d(cin if i == 0 else cout, cout, 3, 1, 1), nn.PReLU(cout)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class MotionFormer(nn.Module):
    """Attribute names block{i}/patch_embed{i}/norm{i} follow the original (they are the keys)."""

    def __init__(self, cfg: EMAVFIConfig):
        super().__init__()
        dims, depths = cfg.embed_dims, cfg.depths
        self.block1 = ConvBlock(3, dims[0], depths[0])
        for i in (1, 2):
            setattr(self, f"patch_embed{i + 1}", nn.Sequential(nn.Conv2d(dims[i - 1], dims[i], 3, 2, 1), nn.PReLU(dims[i])))
            setattr(self, f"block{i + 1}", ConvBlock(dims[i], dims[i], depths[i]))
        self.patch_embed4 = CrossScalePatchEmbed(dims[:3], dims[3])
        self.patch_embed5 = OverlapPatchEmbed(dims[3], dims[4])
        for i, heads in zip((3, 4), cfg.num_heads, strict=False):
            blocks = nn.ModuleList(
                MotionFormerBlock(dims[i], cfg.motion_dims[i], heads, cfg.window, 0 if j % 2 == 0 else cfg.window // 2)
                for j in range(depths[i])
            )
            setattr(self, f"block{i + 1}", blocks)
            setattr(self, f"norm{i + 1}", nn.LayerNorm(dims[i], eps=1e-6))

    def forward(self, img0: Tensor, img1: Tensor) -> tuple[list[Tensor], list[Tensor | None]]:
        """-> appearance features per stage (2B, C, H, W) and motion features (None for conv stages);
        the first B of each batch belong to img0."""
        x = torch.cat([img0, img1])
        xs: list[Tensor] = []
        motion: list[Tensor | None] = [None, None, None]
        for i in range(3):
            x = getattr(self, f"block{i + 1}")(x if i == 0 else getattr(self, f"patch_embed{i + 1}")(x))
            xs.append(x)
        app = list(xs)
        for i in (3, 4):
            x, h, w = self.patch_embed4(xs) if i == 3 else self.patch_embed5(x)
            n2 = x.shape[0]
            # Pixel coordinates in [-1, 1], (x, y) last: what attention moves to measure motion.
            gx = torch.linspace(-1.0, 1.0, w, device=x.device).view(1, 1, w).expand(n2, h, w)
            gy = torch.linspace(-1.0, 1.0, h, device=x.device).view(1, h, 1).expand(n2, h, w)
            cor = torch.stack([gx, gy], -1).to(x.dtype)
            ms = []
            for blk in getattr(self, f"block{i + 1}"):
                x, m = blk(x, cor, h, w)
                ms.append(m.view(n2, h, w, -1).permute(0, 3, 1, 2))
            x = getattr(self, f"norm{i + 1}")(x).view(n2, h, w, -1).permute(0, 3, 1, 2).contiguous()
            motion.append(torch.cat(ms, 1))
            app.append(x)
        return app, motion


def warp(image: Tensor, flow: Tensor) -> Tensor:
    """Backward warp, out(x) = image(x + flow(x)); flow (N, 2, H, W) in pixels (dx, dy)."""
    n, _, h, w = flow.shape
    gx = torch.linspace(-1.0, 1.0, w, device=flow.device, dtype=flow.dtype).view(1, 1, w).expand(n, h, w)
    gy = torch.linspace(-1.0, 1.0, h, device=flow.device, dtype=flow.dtype).view(1, h, 1).expand(n, h, w)
    grid = torch.stack([gx + flow[:, 0] / ((image.shape[3] - 1.0) / 2.0), gy + flow[:, 1] / ((image.shape[2] - 1.0) / 2.0)], -1)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)


class Head(nn.Module):
    """Flow (4: t->0 and t->1) and blend-mask logits at full size from one stage's features."""

    def __init__(self, in_planes: int, scale: int, c: int, in_else: int):
        super().__init__()
        self.scale = scale
        self.conv = nn.Sequential(_conv(in_planes * 2 // 16 + in_else, c), _conv(c, c), _conv(c, 5))

    def forward(self, feat: Tensor, x: Tensor, flow: Tensor | None) -> tuple[Tensor, Tensor]:
        # Two 2x pixel shuffles (not one 4x: the channel order differs) bring features to 1/4 size.
        feat = F.pixel_shuffle(F.pixel_shuffle(feat, 2), 2)
        down = 4.0 / self.scale
        if self.scale != 4:
            x = F.interpolate(x, scale_factor=down, mode="bilinear", align_corners=False)
        if flow is not None:
            if self.scale != 4:
                flow = F.interpolate(flow, scale_factor=down, mode="bilinear", align_corners=False) * down
            x = torch.cat([x, flow], 1)
        x = self.conv(torch.cat([feat, x], 1))
        if self.scale != 4:
            x = F.interpolate(x, scale_factor=self.scale // 4, mode="bilinear", align_corners=False)
        return x[:, :4] * (self.scale // 4), x[:, 4:5]


class Conv2(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1, self.conv2 = _conv(cin, cout, 3, 2, 1), _conv(cout, cout)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(self.conv1(x))


def _deconv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, 2, 1), nn.PReLU(cout))


class Unet(nn.Module):
    """Refinement: a residual for the blended warp, from images, warps, flow and warped features."""

    def __init__(self, c: int):
        super().__init__()
        self.down0, self.down1, self.down2, self.down3 = Conv2(
            17 + c, 2 * c
        ), Conv2(4 * c, 4 * c), Conv2(8 * c, 8 * c), Conv2(16 * c, 16 * c)
        self.up0, self.up1, self.up2, self.up3 = _deconv(
            32 * c, 8 * c
        ), _deconv(16 * c, 4 * c), _deconv(8 * c, 2 * c), _deconv(4 * c, c)
        self.conv = nn.Conv2d(c, 3, 3, 1, 1)

    def forward(self, images: Tensor, c0: list[Tensor], c1: list[Tensor]) -> Tensor:
        s0 = self.down0(torch.cat([images, c0[0], c1[0]], 1))
        s1 = self.down1(torch.cat([s0, c0[1], c1[1]], 1))
        s2 = self.down2(torch.cat([s1, c0[2], c1[2]], 1))
        s3 = self.down3(torch.cat([s2, c0[3], c1[3]], 1))
        x = self.up0(torch.cat([s3, c0[4], c1[4]], 1))
        x = self.up3(torch.cat([self.up2(torch.cat([self.up1(torch.cat([x, s2], 1)), s1], 1)), s0], 1))
        return torch.sigmoid(self.conv(x))


def _init_weights(m: nn.Module) -> None:
    """The original's initialisation (used for `weights: random`)."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Conv2d):
        fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
        nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
        nn.init.zeros_(m.bias)


class EMAVFI(nn.Module):
    """The original's `MultiScaleFlow(feature_extractor(...))`: same attribute names (= keys)."""

    def __init__(self, cfg: EMAVFIConfig = EMA_VFI_OURS):
        super().__init__()
        self.config = cfg
        self.feature_bone = MotionFormer(cfg)
        dims, mdims, depths, scales = cfg.embed_dims, cfg.motion_dims, cfg.depths, (4, 8, 16)
        self.block = nn.ModuleList(
            Head(mdims[-1 - i] * depths[-1 - i] + dims[-1 - i], scales[-1 - i], 4 * cfg.F, 6 if i == 0 else 17) for i in range(2)
        )
        self.unet = Unet(2 * cfg.F)
        self.feature_bone.apply(_init_weights)
        self.unet.apply(_init_weights)

    def features(self, img0: Tensor, img1: Tensor) -> tuple[list[Tensor], list[Tensor | None]]:
        return self.feature_bone(img0, img1)

    def flow(self, img0: Tensor, img1: Tensor, af: list[Tensor], mf: list, t: float) -> tuple[Tensor, Tensor]:
        """Coarse (1/16) to fine (1/8) heads: flow (B, 4, H, W) to both ends at time t, mask logits."""
        b = img0.shape[0]
        flow = mask = None
        for i, head in enumerate(self.block):
            m, a = mf[-1 - i], af[-1 - i]
            feat = torch.cat([t * m[:b], (1 - t) * m[b:], a[:b], a[b:]], 1)
            if flow is None:
                flow, mask = head(feat, torch.cat([img0, img1], 1), None)
            else:
                w0, w1 = warp(img0, flow[:, :2]), warp(img1, flow[:, 2:4])
                d_flow, d_mask = head(feat, torch.cat([img0, img1, w0, w1, mask], 1), flow)
                flow, mask = flow + d_flow, mask + d_mask
        return flow, mask

    def refine(self, img0: Tensor, img1: Tensor, af: list[Tensor], flow: Tensor, mask: Tensor) -> Tensor:
        """Warp both frames by the final flow, blend by the mask, add the U-Net residual: (B,3,H,W) in [0,1]."""
        b = img0.shape[0]
        w0, w1 = warp(img0, flow[:, :2]), warp(img1, flow[:, 2:4])
        c0, c1, f = [], [], flow
        for a in af:  # the appearance features warped like the images, at each stage's size
            c0.append(warp(a[:b], f[:, :2]))
            c1.append(warp(a[b:], f[:, 2:4]))
            f = F.interpolate(f, scale_factor=0.5, mode="bilinear", align_corners=False, recompute_scale_factor=False) * 0.5
        res = self.unet(torch.cat([img0, img1, w0, w1, mask, flow], 1), c0, c1)[:, :3] * 2 - 1
        m = torch.sigmoid(mask)
        return (w0 * m + w1 * (1 - m) + res).clamp(0, 1)

    def forward(self, img0: Tensor, img1: Tensor, timestep: float = 0.5) -> Tensor:
        """(B,3,H,W) x2 in [0,1], BGR, sides a multiple of 32 -> the frame at `timestep`."""
        af, mf = self.features(img0, img1)
        flow, mask = self.flow(img0, img1, af, mf, timestep)
        return self.refine(img0, img1, af, flow, mask)
