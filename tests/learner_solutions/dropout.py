def dropout_forward(x, p, rng):
    if rng is None or p == 0:
        return x, None
    keep = rng.random(x.shape) >= p
    return x * keep / (1 - p), (keep, p)


def dropout_backward(dout, cache):
    if cache is None:
        return dout
    keep, p = cache
    return dout * keep / (1 - p)
