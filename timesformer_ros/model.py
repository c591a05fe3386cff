"""TimeSformer (Bertasius et al., ICML 2021): the network only.

The maths follows the official facebookresearch/TimeSformer `timesformer/models/vit.py` exactly:

* divided space-time blocks: temporal attention over the T tokens of one patch position (the CLS
  token takes no part), a zero-initialised `temporal_fc` on its output, then spatial attention
  over the N patches of one frame with the CLS token repeated into every frame and its T results
  averaged back into one CLS token, then the MLP;
* joint space-time blocks: one attention over all T*N patch tokens and the CLS token;
* space-only blocks: a plain ViT per frame; the frames' token features are averaged before the
  final norm and head (one row of logits per clip, unlike Hugging Face's `space_only`).

Parameter names are the official ones (without the `model.` prefix of its wrapper), so converting
an official checkpoint is a matter of stripping prefixes (see `checkpoints`).

Internally patch tokens are ordered frame-major, `(t n)`; the official code orders them
`(n t)`. Attention, layer norms and MLPs are equivariant to that permutation, so the logits are
the same; frame-major order makes the einops patterns below read as what they do.

The layout is that of timm's `vision_transformer.py`: `PatchEmbed`, `Attention`, `Mlp`, the
blocks, and `TimeSformer` with `forward_features` (video -> final-norm tokens), `forward_head`
(tokens -> logits) and both weight initialisations side by side (`init_weights`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from einops import rearrange, reduce, repeat
from torch import nn

ATTENTION_TYPES = ('divided_space_time', 'space_only', 'joint_space_time')
WEIGHT_INITS = ('official', 'scratch')


@dataclass(frozen=True)
class TimeSformerConfig:
    """Architecture of a TimeSformer. Invalid combinations raise `ValueError`."""

    img_size: int = 224
    patch_size: int = 16
    num_frames: int = 8
    in_chans: int = 3
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    num_classes: int = 400
    attention_type: str = 'divided_space_time'
    layer_norm_eps: float = 1e-6
    # When False, a clip whose T or resolution differs from the embeddings' raises instead of
    # resizing them (nearest-neighbour, as the official code does).
    resize_embeddings: bool = True

    def __post_init__(self):
        positive = ('img_size', 'patch_size', 'num_frames', 'in_chans', 'embed_dim', 'depth',
                    'num_heads')
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f'{name} must be a positive integer, got {value!r}')
        if not isinstance(self.num_classes, int) or self.num_classes < 0:
            raise ValueError(
                f'num_classes must be a non-negative integer, got {self.num_classes!r}')
        if self.attention_type not in ATTENTION_TYPES:
            raise ValueError(
                f'attention_type must be one of {ATTENTION_TYPES}, got {self.attention_type!r}')
        if self.img_size % self.patch_size:
            raise ValueError(
                f'img_size {self.img_size} is not a multiple of patch_size {self.patch_size}')
        if self.embed_dim % self.num_heads:
            raise ValueError(
                f'embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}')
        if not self.mlp_ratio > 0 or (self.embed_dim * self.mlp_ratio) % 1:
            raise ValueError(
                f'mlp_ratio {self.mlp_ratio} must be positive and give an integer hidden size '
                f'for embed_dim {self.embed_dim}')

    @property
    def grid_size(self) -> int:
        return self.img_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid_size ** 2

    @property
    def mlp_hidden_dim(self) -> int:
        return int(self.embed_dim * self.mlp_ratio)

    def replace(self, **changes) -> 'TimeSformerConfig':
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> 'TimeSformerConfig':
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f'unknown TimeSformerConfig fields: {unknown}')
        return cls(**values)


PRESETS = {
    # Kinetics-400 TimeSformer (8 frames, 224 px), the paper's default model.
    'base_8x224': TimeSformerConfig(),
    # TimeSformer-HR: 16 frames at 448 px.
    'hr_16x448': TimeSformerConfig(img_size=448, num_frames=16),
    # TimeSformer-L: 96 frames at 224 px.
    'large_96x224': TimeSformerConfig(num_frames=96),
    # Milliseconds on a CPU: the tests.
    'tiny': TimeSformerConfig(img_size=32, patch_size=8, num_frames=8, embed_dim=64, depth=2,
                              num_heads=4, num_classes=7),
    # A few milliseconds on one CPU core: the embedded motion model (48 px, so that a slow
    # motion still moves whole pixels over a clip).
    'motion': TimeSformerConfig(img_size=48, patch_size=8, num_frames=8, embed_dim=64, depth=3,
                                num_heads=4, num_classes=7),
}


def preset(name: str, **overrides) -> TimeSformerConfig:
    """Return the preset configuration `name`, with optional field overrides."""
    if name not in PRESETS:
        raise ValueError(f'unknown preset {name!r}; known presets: {sorted(PRESETS)}')
    return PRESETS[name].replace(**overrides)


class PatchEmbed(nn.Module):
    """Frames to patch embeddings: (B, C, H, W) -> (B, N, D), as timm's `PatchEmbed`.

    One convolution with kernel and stride `patch_size`; the N = (H/p) * (W/p) patches are in
    row-major order, with H and W read from the input.
    """

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def grid(self, height: int, width: int) -> tuple:
        """Return the rows and columns of patches in a `height` x `width` frame."""
        return height // self.patch_size, width // self.patch_size

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return rearrange(self.proj(frames), 'b d h w -> b (h w) d')


class Attention(nn.Module):
    """Multi-head self-attention with a fused and an explicit path of identical maths.

    The fused path (`F.scaled_dot_product_attention`) runs by default. The explicit softmax path
    runs only when `need_weights` is set, and then also returns the attention weights
    (batch, heads, queries, keys).
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, need_weights: bool = False):
        q, k, v = rearrange(self.qkv(x), 'b n (three h d) -> three b h n d', three=3,
                            h=self.num_heads)
        if need_weights:
            weights = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
            out = weights @ v
        else:
            weights = None
            out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(rearrange(out, 'b h n d -> b n (h d)')), weights


class Mlp(nn.Module):

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class BlockWeights(NamedTuple):
    """Attention weights of one block, as computed by the explicit path.

    spatial: (B*T, heads, 1+N, 1+N) for divided and space-only blocks (row/column 0 is the CLS
        token), (B, heads, 1+T*N, 1+T*N) for joint blocks (patch tokens frame-major).
    temporal: (B*N, heads, T, T) for divided blocks, else None.
    """

    spatial: torch.Tensor
    temporal: Optional[torch.Tensor]


class Block(nn.Module):
    """Pre-norm ViT block: joint space-time attention, or per-frame attention for space-only."""

    def __init__(self, config: TimeSformerConfig):
        super().__init__()
        dim = config.embed_dim
        self.norm1 = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.attn = Attention(dim, config.num_heads, config.qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.mlp = Mlp(dim, config.mlp_hidden_dim)

    def forward(self, x: torch.Tensor, num_frames: int, need_weights: bool = False):
        res, weights = self.attn(self.norm1(x), need_weights)
        x = x + res
        x = x + self.mlp(self.norm2(x))
        return x, BlockWeights(weights, None) if need_weights else None


class DividedBlock(Block):
    """Divided space-time block: temporal attention, then spatial attention, then the MLP.

    Input and output: (B, 1 + T*N, D), the CLS token first, patch tokens frame-major.
    """

    def __init__(self, config: TimeSformerConfig):
        super().__init__(config)
        dim = config.embed_dim
        self.temporal_norm1 = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.temporal_attn = Attention(dim, config.num_heads, config.qkv_bias)
        self.temporal_fc = nn.Linear(dim, dim)

    def zero_init_last(self):
        """Zero `temporal_fc`, so that a fresh temporal branch adds nothing to the residual."""
        nn.init.zeros_(self.temporal_fc.weight)
        nn.init.zeros_(self.temporal_fc.bias)

    def forward(self, x: torch.Tensor, num_frames: int, need_weights: bool = False):
        batch = x.shape[0]
        cls, patches = x[:, :1], x[:, 1:]

        xt = rearrange(patches, 'b (t n) d -> (b n) t d', t=num_frames)
        res_t, weights_t = self.temporal_attn(self.temporal_norm1(xt), need_weights)
        res_t = rearrange(res_t, '(b n) t d -> b (t n) d', b=batch)
        patches = patches + self.temporal_fc(res_t)

        xs = rearrange(patches, 'b (t n) d -> (b t) n d', t=num_frames)
        xs = torch.cat([repeat(cls, 'b 1 d -> (b t) 1 d', t=num_frames), xs], dim=1)
        res_s, weights_s = self.attn(self.norm1(xs), need_weights)
        res_cls = reduce(res_s[:, :1], '(b t) 1 d -> b 1 d', 'mean', t=num_frames)
        res_patches = rearrange(res_s[:, 1:], '(b t) n d -> b (t n) d', t=num_frames)

        x = torch.cat([cls + res_cls, patches + res_patches], dim=1)
        x = x + self.mlp(self.norm2(x))
        return x, BlockWeights(weights_s, weights_t) if need_weights else None


def _init_official(module: nn.Module):
    """Initialise a linear layer or layer norm as the official code does (else nothing)."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class TimeSformer(nn.Module):
    """TimeSformer video classifier taking video as (B, T, C, H, W).

    T, H and W are read from the input; the learned space and time embeddings are resized by
    nearest-neighbour interpolation when they differ from the configuration (as the official
    code does), or a `ValueError` is raised when `config.resize_embeddings` is False.
    `weight_init` picks the initialisation (`init_weights`).
    """

    def __init__(self, config: TimeSformerConfig, weight_init: str = 'official'):
        super().__init__()
        if weight_init not in WEIGHT_INITS:
            raise ValueError(f'weight_init must be one of {WEIGHT_INITS}, got {weight_init!r}')
        self.config = config
        dim = config.embed_dim
        self.patch_embed = PatchEmbed(config.patch_size, config.in_chans, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, config.num_patches + 1, dim))
        if config.attention_type == 'space_only':
            self.time_embed = None
        else:
            self.time_embed = nn.Parameter(torch.zeros(1, config.num_frames, dim))
        block = DividedBlock if config.attention_type == 'divided_space_time' else Block
        self.blocks = nn.ModuleList(block(config) for _ in range(config.depth))
        self.norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.head = nn.Linear(dim, config.num_classes) if config.num_classes else nn.Identity()
        self.init_weights(weight_init)

    # -- initialisation --------------------------------------------------------------------

    def reset_parameters(self):
        """Initialise the parameters as the official code does.

        Truncated normal (std 0.02) for linear layers and the CLS and position embeddings,
        unit layer norms, zero biases and time embedding, and the last layer of every block
        that has `zero_init_last` (the temporal output projection `temporal_fc` of divided
        blocks) zero, so that a fresh temporal branch starts as the identity (the official
        code finds those blocks by matching 'Block' in module reprs; here each block says what
        it zeroes). The patch-embedding convolution keeps PyTorch's default initialisation, as
        in the official code.
        """
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for module in self.modules():
            _init_official(module)
        if self.time_embed is not None:
            nn.init.zeros_(self.time_embed)
        for module in self.modules():
            if hasattr(module, 'zero_init_last'):
                module.zero_init_last()

    def init_weights(self, scheme: str = 'official', embed_std: float = 1.0,
                     temporal_qkv_std: float = 0.3) -> 'TimeSformer':
        """Initialise the parameters by `scheme`, 'official' or 'scratch'; return the model.

        'official' is `reset_parameters`, made for starting from a pretrained ViT. From
        scratch it leaves the network blind to frame order: temporal attention starts uniform
        (q.k ~ 0), so it returns the temporal mean whatever the time embedding, and with a
        zero `temporal_fc` no gradient reaches it. Training then learns order-blind motion
        energy (static vs translating vs scaling) and never direction. 'scratch' therefore
        continues from the official values with the position and time embeddings at the scale
        of the patch content (normal, `embed_std`), temporal q/k/v large enough for
        time-selective attention (normal, `temporal_qkv_std`) and `temporal_fc` initialised
        like the other linear layers. Measured on a small direction task (4 classes, 32 px,
        T=4, 1200 steps): chance with the official initialisation, 93% with 'scratch'.
        """
        if scheme not in WEIGHT_INITS:
            raise ValueError(f'weight_init scheme must be one of {WEIGHT_INITS}, got {scheme!r}')
        self.reset_parameters()
        if scheme == 'scratch':
            nn.init.normal_(self.pos_embed, std=embed_std)
            if self.time_embed is not None:
                nn.init.normal_(self.time_embed, std=embed_std)
            for blk in self.blocks:
                if isinstance(blk, DividedBlock):
                    nn.init.normal_(blk.temporal_attn.qkv.weight, std=temporal_qkv_std)
                    nn.init.trunc_normal_(blk.temporal_fc.weight, std=0.02)
        return self

    def reset_classifier(self, num_classes: int):
        """Replace the head by a new one for `num_classes` classes (official init; 0: none)."""
        self.config = self.config.replace(num_classes=num_classes)
        if num_classes:
            reference = self.norm.weight
            self.head = nn.Linear(self.config.embed_dim, num_classes, device=reference.device,
                                  dtype=reference.dtype)
            _init_official(self.head)
        else:
            self.head = nn.Identity()

    def resized(self, img_size: int, patch_size: int) -> 'TimeSformer':
        """Return a copy for `img_size` and `patch_size`, every weight carried over.

        The patch embedding is resampled to the new patch size by FlexiViT's pseudo-inverse
        resize (timm's `resample_patch_embed`): a clip resized by the same factor gives the
        same patch tokens as before, so the copy starts as the model it came from, on more
        pixels. The position embedding is resized to the new grid (bicubic, CLS kept). Used
        to fine-tune a trained model at a higher input resolution.
        """
        from timm.layers import resample_abs_pos_embed, resample_patch_embed
        config = self.config.replace(img_size=img_size, patch_size=patch_size)
        state = {name: value.detach().clone() for name, value in self.state_dict().items()}
        state['patch_embed.proj.weight'] = resample_patch_embed(
            state['patch_embed.proj.weight'], [patch_size, patch_size])
        if config.grid_size != self.config.grid_size:
            state['pos_embed'] = resample_abs_pos_embed(
                state['pos_embed'], [config.grid_size] * 2, num_prefix_tokens=1)
        copy = TimeSformer(config)
        copy.load_state_dict(state)
        return copy.to(self.norm.weight.device)

    # -- input checks and embeddings ---------------------------------------------------------

    def check_video(self, video: torch.Tensor):
        """Raise `ValueError` naming the problem when `video` cannot be a (B, T, C, H, W) clip."""
        cfg = self.config
        if video.dim() != 5:
            raise ValueError(
                f'video must have shape (B, T, C, H, W), got {video.dim()} dimensions '
                f'{tuple(video.shape)}')
        batch, frames, chans, height, width = video.shape
        if chans != cfg.in_chans:
            raise ValueError(f'video has {chans} channels, the model expects {cfg.in_chans} '
                             f'(shape {tuple(video.shape)} is read as B, T, C, H, W)')
        if min(batch, frames) < 1:
            raise ValueError(f'video has an empty batch or time axis: {tuple(video.shape)}')
        for name, size in (('height', height), ('width', width)):
            if size < cfg.patch_size or size % cfg.patch_size:
                raise ValueError(
                    f'video {name} {size} is not a positive multiple of patch_size '
                    f'{cfg.patch_size}')
        if not cfg.resize_embeddings:
            if self.time_embed is not None and frames != self.time_embed.shape[1]:
                raise ValueError(
                    f'clip has T={frames} frames but the time embedding holds '
                    f'{self.time_embed.shape[1]} and resize_embeddings is disabled')
            if (height, width) != (cfg.img_size, cfg.img_size):
                raise ValueError(
                    f'clip is {height}x{width} but the position embedding is for '
                    f'{cfg.img_size}x{cfg.img_size} and resize_embeddings is disabled')

    def _pos_embed(self, grid_h: int, grid_w: int) -> torch.Tensor:
        pos = self.pos_embed
        grid = self.config.grid_size
        if (grid_h, grid_w) == (grid, grid):
            return pos
        patches = rearrange(pos[:, 1:], '1 (h w) d -> 1 d h w', h=grid)
        patches = F.interpolate(patches, size=(grid_h, grid_w), mode='nearest')
        return torch.cat([pos[:, :1], rearrange(patches, '1 d h w -> 1 (h w) d')], dim=1)

    def _time_embed(self, num_frames: int) -> torch.Tensor:
        time = self.time_embed
        if num_frames == time.shape[1]:
            return time
        time = F.interpolate(rearrange(time, '1 t d -> 1 d t'), size=num_frames, mode='nearest')
        return rearrange(time, '1 d t -> 1 t d')

    def embed(self, video: torch.Tensor) -> torch.Tensor:
        """Add position and time embeddings to the patch embeddings, CLS token first.

        Returns (B, 1 + T*N, D) for divided and joint attention, (B*T, 1 + N, D) for
        space-only attention.
        """
        self.check_video(video)
        batch, frames = video.shape[:2]
        pos = self._pos_embed(*self.patch_embed.grid(*video.shape[-2:]))
        x = self.patch_embed(rearrange(video, 'b t c h w -> (b t) c h w')) + pos[:, 1:]
        cls = self.cls_token + pos[:, :1]
        if self.time_embed is None:
            return torch.cat([cls.expand(x.shape[0], -1, -1), x], dim=1)
        x = rearrange(x, '(b t) n d -> b t n d', b=batch) + self._time_embed(frames)[:, :, None]
        x = rearrange(x, 'b t n d -> b (t n) d')
        return torch.cat([cls.expand(batch, -1, -1), x], dim=1)

    # -- forward ---------------------------------------------------------------------------

    def _forward_tokens(self, video: torch.Tensor, weights_from: frozenset):
        """Run `forward_features`, returning also {block index: BlockWeights} of `weights_from`."""
        frames = video.shape[1]
        x = self.embed(video)
        weights = {}
        for index, blk in enumerate(self.blocks):
            need = index in weights_from
            x, block_weights = blk(x, frames, need)
            if need:
                weights[index] = block_weights
        if self.time_embed is None:
            x = reduce(x, '(b t) n d -> b n d', 'mean', t=frames)
        return self.norm(x), weights

    def forward_features(self, video: torch.Tensor) -> torch.Tensor:
        """Encode video (B, T, C, H, W) into final-norm tokens (B, 1 + L, D), the CLS token first.

        L = T*N patch tokens (frame-major) for divided and joint attention; for space-only
        attention the frames' tokens are averaged first, as the official code does, so L = N.
        """
        tokens, _ = self._forward_tokens(video, frozenset())
        return tokens

    def forward_head(self, tokens: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Classify `forward_features` tokens: logits (B, num_classes), or CLS features (B, D)."""
        cls = tokens[:, 0]
        return cls if pre_logits else self.head(cls)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """Compute logits (B, num_classes) for video (B, T, C, H, W)."""
        return self.forward_head(self.forward_features(video))

    def forward_with_attention(self, video: torch.Tensor, blocks: Optional[set] = None):
        """Compute logits and the attention weights of `blocks` (default: the last block only).

        Returns (logits, {block index: BlockWeights}). Those blocks run the explicit attention
        path, every other block the fused one; the logits equal `forward`'s.
        """
        tokens, weights = self.forward_features_with_attention(video, blocks)
        return self.forward_head(tokens), weights

    def forward_features_with_attention(self, video: torch.Tensor,
                                        blocks: Optional[set] = None):
        """Return `forward_features`' tokens and the attention weights of `blocks`.

        (tokens, {block index: BlockWeights}); `blocks` defaults to the last block only.
        """
        if blocks is None:
            blocks = {len(self.blocks) - 1}
        return self._forward_tokens(video, frozenset(blocks))


def attention_flops(config: TimeSformerConfig, num_frames: Optional[int] = None) -> int:
    """Count the FLOPs of the attention products QK^T and AV of one clip, analytically.

    Query-key pairs per block: divided N*T^2 (temporal) + T*(N+1)^2 (spatial), so O(NT(N+T));
    joint (NT+1)^2, so O((NT)^2); space-only T*(N+1)^2. Each pair costs embed_dim
    multiply-accumulates in each of the two products, and a multiply-accumulate is 2 FLOPs
    (as `torch.utils.flop_counter` counts them).
    """
    t = config.num_frames if num_frames is None else num_frames
    n = config.num_patches
    if config.attention_type == 'divided_space_time':
        pairs = n * t * t + t * (n + 1) ** 2
    elif config.attention_type == 'joint_space_time':
        pairs = (n * t + 1) ** 2
    else:
        pairs = t * (n + 1) ** 2
    macs = 2 * pairs * config.embed_dim * config.depth
    return 2 * macs


def count_parameters(model: nn.Module) -> int:
    """Return the number of parameters of `model`."""
    return sum(p.numel() for p in model.parameters())


__all__ = [
    'ATTENTION_TYPES', 'Attention', 'Block', 'BlockWeights', 'DividedBlock', 'Mlp', 'PRESETS',
    'PatchEmbed', 'TimeSformer', 'TimeSformerConfig', 'WEIGHT_INITS', 'attention_flops',
    'count_parameters', 'preset',
]
