from .attention import attention_backward, attention_forward
from .dropout import dropout_backward, dropout_forward
from .layernorm import layernorm_backward, layernorm_forward
from .linear import linear_backward, linear_forward
from .relu import relu_backward, relu_forward

ATTN = ("self_attn.in_proj_weight", "self_attn.in_proj_bias", "self_attn.out_proj.weight",
        "self_attn.out_proj.bias")


def encoder_layer_forward(x, layer, n_heads, key_mask=None, p=0.0, rng=None):
    a, attn = attention_forward(x, *(layer[k] for k in ATTN), n_heads, key_mask, p, rng)
    a, drop1 = dropout_forward(a, p, rng)
    h, norm1 = layernorm_forward(x + a, layer["norm1.weight"], layer["norm1.bias"])
    f, lin1 = linear_forward(h, layer["linear1.weight"], layer["linear1.bias"])
    f, relu = relu_forward(f)
    f, drop2 = dropout_forward(f, p, rng)
    f, lin2 = linear_forward(f, layer["linear2.weight"], layer["linear2.bias"])
    f, drop3 = dropout_forward(f, p, rng)
    out, norm2 = layernorm_forward(h + f, layer["norm2.weight"], layer["norm2.bias"])
    return out, (attn, drop1, norm1, lin1, relu, drop2, lin2, drop3, norm2)


def encoder_layer_backward(dout, cache):
    attn, drop1, norm1, lin1, relu, drop2, lin2, drop3, norm2 = cache
    g = {}
    dsum2, g["norm2.weight"], g["norm2.bias"] = layernorm_backward(dout, norm2)
    df = dropout_backward(dsum2, drop3)
    df, g["linear2.weight"], g["linear2.bias"] = linear_backward(df, lin2)
    df = dropout_backward(df, drop2)
    df = relu_backward(df, relu)
    dh, g["linear1.weight"], g["linear1.bias"] = linear_backward(df, lin1)
    dh = dh + dsum2
    dsum1, g["norm1.weight"], g["norm1.bias"] = layernorm_backward(dh, norm1)
    da = dropout_backward(dsum1, drop1)
    dx, *dattn = attention_backward(da, attn)
    g.update(zip(ATTN, dattn))
    return dx + dsum1, g
