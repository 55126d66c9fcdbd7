import math

import numpy as np

from .dropout import dropout_backward, dropout_forward
from .linear import linear_backward, linear_forward


def split(a, n_heads):
    B, T, D = a.shape
    return a.reshape(B, T, n_heads, D // n_heads).transpose(0, 2, 1, 3)


def merge(a):
    B, H, T, dh = a.shape
    return a.transpose(0, 2, 1, 3).reshape(B, T, H * dh)


def attention_forward(x, in_w, in_b, out_w, out_b, n_heads, key_mask=None, p=0.0, rng=None):
    B, T, D = x.shape
    if key_mask is None:
        key_mask = np.ones((B, T), dtype=bool)
    qkv, in_cache = linear_forward(x, in_w, in_b)
    q = split(qkv[..., :D], n_heads)
    k = split(qkv[..., D:2 * D], n_heads)
    v = split(qkv[..., 2 * D:], n_heads)
    scale = 1 / math.sqrt(D // n_heads)
    scores = q @ k.transpose(0, 1, 3, 2) * scale
    real = key_mask[:, None, None, :]
    scores = np.where(real, scores, -np.inf)
    top = scores.max(axis=-1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0)
    e = np.where(real, np.exp(scores - top), 0)
    total = e.sum(axis=-1, keepdims=True)
    att = e / np.where(total > 0, total, 1)
    att_drop, drop_cache = dropout_forward(att, p, rng)
    y = merge(att_drop @ v)
    out, out_cache = linear_forward(y, out_w, out_b)
    return out, (in_cache, q, k, v, att, att_drop, drop_cache, out_cache, scale)


def attention_backward(dout, cache):
    in_cache, q, k, v, att, att_drop, drop_cache, out_cache, scale = cache
    B, H, T, dh = q.shape
    dy, d_out_w, d_out_b = linear_backward(dout, out_cache)
    dy = split(dy, H)
    datt_drop = dy @ v.transpose(0, 1, 3, 2)
    dv = att_drop.transpose(0, 1, 3, 2) @ dy
    datt = dropout_backward(datt_drop, drop_cache)
    dscores = att * (datt - (att * datt).sum(axis=-1, keepdims=True))
    dscores = dscores * scale
    dq = dscores @ k
    dk = dscores.transpose(0, 1, 3, 2) @ q
    dqkv = np.concatenate([merge(dq), merge(dk), merge(dv)], axis=-1)
    dx, d_in_w, d_in_b = linear_backward(dqkv, in_cache)
    return dx, d_in_w, d_in_b, d_out_w, d_out_b
