"""In-place kernels: bit-exact with the out-of-place kernels, and the arena they save."""

from __future__ import annotations

import numpy as np
from hypothesis import assume, given
from hypothesis import strategies as st

from strategies import int8_array, seeds, window_configs
from tinyml_lab import zoo
from tinyml_lab.kernels import int8 as ki
from tinyml_lab.kernels import reference as ref
from tinyml_lab.kernels.fixedpoint import quantize_multipliers
from tinyml_lab.memory import deployed_graph, graph_lifetimes, plan
from tinyml_lab.memory import inplace as ip
from tinyml_lab.memory.lifetimes import align_up


@given(window_configs(max_hw=10, max_c=12, max_k=4, max_batch=1), seeds, st.booleans())
def test_inplace_depthwise_is_bit_exact(cfg, seed, relu):
    oh, ow = cfg.out_hw
    c = cfg.c_in
    assume(oh * ow <= cfg.height * cfg.width)  # the output fits in the input's bytes
    rng = np.random.default_rng(seed)
    x = int8_array(rng, (1, cfg.height, cfg.width, c))
    w = int8_array(rng, (1,) + cfg.kernel + (c,), -127, 127)
    b = rng.integers(-5000, 5000, c).astype(np.int32)
    mult, shift = quantize_multipliers(rng.uniform(1e-4, 0.5, c))
    in_zp, out_zp = int(rng.integers(-128, 128)), int(rng.integers(-128, 128))
    lo, hi = (out_zp, 127) if relu else (-128, 127)
    args = (*cfg.strides, *cfg.dilation, *cfg.pads)
    want = ki.depthwise_conv2d_int8(x, w, ki.effective_bias(w, b, in_zp, True), *args, in_zp, mult, shift,
                                    out_zp, lo, hi)
    spec = ref.depthwise_conv2d_int8(x, w, b, cfg.strides, cfg.dilation, cfg.pads, in_zp, mult, shift, out_zp, lo, hi)
    assert np.array_equal(want, spec)
    n_out = oh * ow * c
    for fast in (True, False):
        buf = x.reshape(-1).copy()
        scratch = np.empty(oh * ow, np.int8)
        if fast:
            got = ip.depthwise_conv2d_int8_inplace(buf, cfg.height, cfg.width, c, w, ki.effective_bias(w, b, in_zp, True),
                                                   *args, in_zp, mult, shift, out_zp, lo, hi, scratch)
        else:
            got = ip.depthwise_conv2d_int8_inplace_ref(buf, cfg.height, cfg.width, c, w, b, cfg.strides, cfg.dilation,
                                                       cfg.pads, in_zp, mult, shift, out_zp, lo, hi, scratch)
        assert tuple(got) == (oh, ow)
        assert np.array_equal(buf[:n_out].reshape(1, oh, ow, c), want)


@given(seeds, st.integers(1, 300), st.sampled_from(["a", "b", "none"]))
def test_inplace_add_and_relu_are_bit_exact(seed, n, alias):
    rng = np.random.default_rng(seed)
    a, b = int8_array(rng, (n,)), int8_array(rng, (n,))
    params = (int(rng.integers(-128, 128)), 1518500250, -1, int(rng.integers(-128, 128)), 1073741824, 0,
              int(rng.integers(-128, 128)), 1779033703, -19, -128, 127)
    want = ki.add_int8(a, b, *params)
    out = {"a": a.copy(), "b": b.copy(), "none": np.empty(n, np.int8)}[alias]
    aa = out if alias == "a" else a.copy()
    bb = out if alias == "b" else b.copy()
    ip.add_int8_into(aa, bb, out, *params)
    assert np.array_equal(out, want)
    spec = np.empty(n, np.int8)
    ip.add_int8_into_ref(a, b, spec, *params)
    assert np.array_equal(spec, want)
    rparams = (int(rng.integers(-128, 128)), 1500000000, -2, int(rng.integers(-128, 128)), -100, 127)
    want_r = ki.rescale_int8(a, *rparams)
    x = a.copy()
    ip.rescale_int8_into(x, x, *rparams)
    assert np.array_equal(x, want_r)
    y = np.empty(n, np.int8)
    ip.rescale_int8_into_ref(a, y, *rparams)
    assert np.array_equal(y, want_r)


def _expected_arena(q, inplace: bool) -> int:
    """The lower bound computed by hand from tensor sizes: at a depthwise step the input and output
    (2N) become the input and one output channel (N + H_out W_out)."""
    live = np.zeros(len(q.nodes), np.int64)
    lt = graph_lifetimes(q)
    for b in lt:
        live[b.first: b.last + 1] += align_up(b.size, 16)
    if inplace:
        for i, n in enumerate(q.nodes):
            if n.op == "DepthwiseConv2D":
                y = q.tensors[n.outputs[0]]
                live[i] -= align_up(y.nbytes, 16) - align_up(y.shape[0] * y.shape[1], 16)
    return int(live.max())


def test_inplace_depthwise_shrinks_the_arena_by_the_expected_amount():
    # kws-dscnn: at each depthwise layer 2 x 8000 B become 8000 + 125 B, but the pointwise layers
    # (8000 B in, 8000 B out) still set the peak, so the arena stays at 16000 B.
    kws = deployed_graph(zoo.get("kws-dscnn"))
    lt = graph_lifetimes(kws, inplace=True)
    dw_steps = [i for i, n in enumerate(kws.nodes) if n.op == "DepthwiseConv2D"]
    live = lt.live_bytes(16)
    assert all(live[i] == 8000 + align_up(125, 16) for i in dw_steps)
    assert graph_lifetimes(kws).live_bytes(16)[dw_steps].tolist() == [16000] * 4
    for q, before, after in [(kws, 16000, 16000),
                             (deployed_graph(zoo.get("mobilenetv2")), 245760, 229376)]:
        assert plan(q, "greedy-size").arena_bytes == _expected_arena(q, False) == before
        assert plan(q, "greedy-size", inplace=True).arena_bytes == _expected_arena(q, True) == after
