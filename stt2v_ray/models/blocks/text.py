"""Tiny CLIP tokenizer and text encoder (real transformers classes at toy size).

transformers 5 ignores `vocab_file`/`merges_file` in the CLIPTokenizer constructor, so the
vocabulary is built in memory: every byte-level character, with and without the
end-of-word marker, plus a few merges, plus the special tokens.
"""
from __future__ import annotations

import torch
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte-level alphabet: every byte mapped to a printable character."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1))
    bs += list(range(ord("\xae"), ord("\xff") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs), strict=False))


def build_tiny_tokenizer(max_length: int = 32) -> CLIPTokenizer:
    chars = list(bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars] + [BOS, EOS]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    tok = CLIPTokenizer(vocab=vocab, merges=[], unk_token=EOS, bos_token=BOS, eos_token=EOS, pad_token=EOS)
    tok.model_max_length = max_length
    return tok


def build_tiny_text_encoder(tokenizer: CLIPTokenizer, hidden: int = 32, seed: int = 0) -> CLIPTextModel:
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=tokenizer.model_max_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):  # seeded weights, global RNG untouched
        torch.manual_seed(seed)
        return CLIPTextModel(config).eval()


@torch.no_grad()
def encode_text(tokenizer: CLIPTokenizer, encoder: CLIPTextModel, texts: list[str], clip_skip: int = 0) -> torch.Tensor:
    """texts -> (len(texts), max_length, hidden): the last hidden states, or with clip_skip = n the hidden state
    n layers before the last passed through the final layer norm (diffusers' `clip_skip`)."""
    ids = tokenizer(
        texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids.to(encoder.device)
    if clip_skip == 0:
        return encoder(ids)[0]
    hidden = encoder(ids, output_hidden_states=True).hidden_states[-(clip_skip + 1)]
    # transformers 5 keeps the layer norm on the model itself; 4.x under `text_model`
    return getattr(encoder, "text_model", encoder).final_layer_norm(hidden)
