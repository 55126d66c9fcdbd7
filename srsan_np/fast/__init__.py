"""The fast path: the model's kernels, free to fuse and take shortcuts, held to the textbook.

:mod:`srsan_np.ops` is the textbook: every op as docs/derivations.md derives it. This
package computes the same losses and gradients faster, each shortcut an identity that
makes it exact (docs/derivations.md, section 13), and each function tested against the
textbook op it replaces (``tests/test_fast_paths.py``: float64, dropout off, equal to
1e-10). It imports from ``ops`` what it shares; ``ops`` never imports from here.

- :mod:`.attention`: one query per row at the read-out, the keys and values folded into
  it; keys and values once per distinct row in the layers before.
- :mod:`.encoder`: the last encoder layer computed at the read-out alone.
- :mod:`.scoring`: the softmax without a max pass, in the fastest base, in item blocks on
  every core.
- :mod:`.table`: the tied table's gradient kept as its parts, made block by block where
  Adam reads it.
- :mod:`.threads`: those blocks on the fast path's own threads, BLAS on one thread each.
- :mod:`.optim`: Adam with its small arrays on one thread, the table from its gradient's
  blocks.

The model picks a path with ``kernels="reference"`` or ``"fast"`` (see
:mod:`srsan_np.kernels`).
"""
