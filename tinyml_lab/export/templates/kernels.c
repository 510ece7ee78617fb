/*@ common
 * The int8 kernel library of tinyml_lab's C export: the arithmetic of the TFLite
 * int8 reference kernels (and of tinyml_lab.kernels.reference), integers only.
 *
 * Requantization (gemmlowp "double rounding"): a real multiplier M is stored as
 * m in [2^30, 2^31) and a shift, M ~= m 2^(shift - 31);
 *   requantize(acc) = RDBPOT(SRDHM(acc 2^max(shift, 0), m), max(-shift, 0))
 * SRDHM(a, b) = floor((a b + 2^30) / 2^31), saturated; RDBPOT(x, e) = x / 2^e
 * rounded half away from zero. Accumulators wrap modulo 2^32 like int32.
 * Assumes two's complement and arithmetic right shifts of negative values,
 * as every GCC and Clang target does.
 */
static inline int32_t tml_srdhm(int32_t a, int32_t b)
{
    int64_t q = ((int64_t)a * (int64_t)b + ((int64_t)1 << 30)) >> 31;
    return q > INT32_MAX ? INT32_MAX : (int32_t)q;
}

static inline int32_t tml_rdbpot(int32_t x, int e)
{
    int32_t mask, rem, thr;
    if (e <= 0) {
        return x;
    }
    mask = (int32_t)(((int64_t)1 << e) - 1);
    rem = x & mask;
    thr = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> e) + (rem > thr ? 1 : 0);
}

static inline int32_t tml_requantize(int32_t acc, int32_t m, int32_t shift)
{
    if (shift > 0) {
        return tml_srdhm((int32_t)((uint32_t)acc << shift), m);
    }
    return tml_rdbpot(tml_srdhm(acc, m), -shift);
}

static inline int8_t tml_clamp(int32_t v, int32_t lo, int32_t hi)
{
    return (int8_t)(v < lo ? lo : (v > hi ? hi : v));
}

/*@ conv2d
 * y[oy,ox,o] = clamp(out_zp + requantize(b[o] + sum_{ky,kx,i} w[o,ky,kx,i] (x[iy,ix,i] - in_zp)))
 * with iy = oy sh - pt + ky dh, ix = ox sw - pl + kx dw; positions outside the
 * input are skipped (the same as padding with in_zp). Weights OHWI.
 */
static void tml_conv2d(const int8_t *x, int h, int w, int cin, const int8_t *wt, const int32_t *bias,
                       int cout, int kh, int kw, int sh, int sw, int dh, int dw, int pt, int pl,
                       int oh, int ow, int32_t in_zp, const int32_t *mult, const int8_t *shift,
                       int32_t out_zp, int32_t lo, int32_t hi, int8_t *y)
{
    int oy, ox, o, ky, kx, i;
    for (oy = 0; oy < oh; ++oy) {
        for (ox = 0; ox < ow; ++ox) {
            int8_t *yp = y + (oy * ow + ox) * cout;
            for (o = 0; o < cout; ++o) {
                const int8_t *wo = wt + o * kh * kw * cin;
                uint32_t acc = bias ? (uint32_t)bias[o] : 0u;
                for (ky = 0; ky < kh; ++ky) {
                    int iy = oy * sh - pt + ky * dh;
                    if (iy < 0 || iy >= h) {
                        continue;
                    }
                    for (kx = 0; kx < kw; ++kx) {
                        int ix = ox * sw - pl + kx * dw;
                        const int8_t *xp, *wp;
                        if (ix < 0 || ix >= w) {
                            continue;
                        }
                        xp = x + (iy * w + ix) * cin;
                        wp = wo + (ky * kw + kx) * cin;
                        for (i = 0; i < cin; ++i) {
                            acc += (uint32_t)((int32_t)wp[i] * ((int32_t)xp[i] - in_zp));
                        }
                    }
                }
                yp[o] = tml_clamp(tml_requantize((int32_t)acc, mult[o], shift[o]) + out_zp, lo, hi);
            }
        }
    }
}

/*@ depthwise
 * y[oy,ox,c] = clamp(out_zp + requantize(b[c] + sum_{ky,kx} w[0,ky,kx,c] (x[iy,ix,c] - in_zp))),
 * depth multiplier 1, weights 1HWC.
 */
static void tml_depthwise(const int8_t *x, int h, int w, int c, const int8_t *wt, const int32_t *bias,
                          int kh, int kw, int sh, int sw, int dh, int dw, int pt, int pl, int oh, int ow,
                          int32_t in_zp, const int32_t *mult, const int8_t *shift, int32_t out_zp,
                          int32_t lo, int32_t hi, int8_t *y)
{
    int oy, ox, ch, ky, kx;
    for (oy = 0; oy < oh; ++oy) {
        for (ox = 0; ox < ow; ++ox) {
            int8_t *yp = y + (oy * ow + ox) * c;
            for (ch = 0; ch < c; ++ch) {
                uint32_t acc = bias ? (uint32_t)bias[ch] : 0u;
                for (ky = 0; ky < kh; ++ky) {
                    int iy = oy * sh - pt + ky * dh;
                    if (iy < 0 || iy >= h) {
                        continue;
                    }
                    for (kx = 0; kx < kw; ++kx) {
                        int ix = ox * sw - pl + kx * dw;
                        if (ix < 0 || ix >= w) {
                            continue;
                        }
                        acc += (uint32_t)((int32_t)wt[(ky * kw + kx) * c + ch]
                                          * ((int32_t)x[(iy * w + ix) * c + ch] - in_zp));
                    }
                }
                yp[ch] = tml_clamp(tml_requantize((int32_t)acc, mult[ch], shift[ch]) + out_zp, lo, hi);
            }
        }
    }
}

/*@ dense
 * y[o] = clamp(out_zp + requantize(b[o] + sum_i w[o,i] (x[i] - in_zp))), weights (C_out, C_in).
 */
static void tml_dense(const int8_t *x, int cin, const int8_t *wt, const int32_t *bias, int cout,
                      int32_t in_zp, const int32_t *mult, const int8_t *shift, int32_t out_zp,
                      int32_t lo, int32_t hi, int8_t *y)
{
    int o, i;
    for (o = 0; o < cout; ++o) {
        const int8_t *wo = wt + o * cin;
        uint32_t acc = bias ? (uint32_t)bias[o] : 0u;
        for (i = 0; i < cin; ++i) {
            acc += (uint32_t)((int32_t)wo[i] * ((int32_t)x[i] - in_zp));
        }
        y[o] = tml_clamp(tml_requantize((int32_t)acc, mult[o], shift[o]) + out_zp, lo, hi);
    }
}

/*@ avgpool
 * The average of the codes over the part of each window inside the input,
 * rounded half away from zero (C's truncating division on a nudged sum).
 */
static void tml_avgpool(const int8_t *x, int h, int w, int c, int ph, int pw, int sh, int sw, int pt, int pl,
                        int oh, int ow, int32_t lo, int32_t hi, int8_t *y)
{
    int oy, ox, ch, iy, ix;
    for (oy = 0; oy < oh; ++oy) {
        int y0 = oy * sh - pt, y1 = y0 + ph;
        y0 = y0 < 0 ? 0 : y0;
        y1 = y1 > h ? h : y1;
        for (ox = 0; ox < ow; ++ox) {
            int x0 = ox * sw - pl, x1 = x0 + pw;
            int32_t count;
            x0 = x0 < 0 ? 0 : x0;
            x1 = x1 > w ? w : x1;
            count = (y1 - y0) * (x1 - x0);
            for (ch = 0; ch < c; ++ch) {
                int32_t acc = 0, v;
                for (iy = y0; iy < y1; ++iy) {
                    for (ix = x0; ix < x1; ++ix) {
                        acc += x[(iy * w + ix) * c + ch];
                    }
                }
                v = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
                y[(oy * ow + ox) * c + ch] = tml_clamp(v, lo, hi);
            }
        }
    }
}

/*@ maxpool
 * The largest code of the part of each window inside the input.
 */
static void tml_maxpool(const int8_t *x, int h, int w, int c, int ph, int pw, int sh, int sw, int pt, int pl,
                        int oh, int ow, int32_t lo, int32_t hi, int8_t *y)
{
    int oy, ox, ch, iy, ix;
    for (oy = 0; oy < oh; ++oy) {
        int y0 = oy * sh - pt, y1 = y0 + ph;
        y0 = y0 < 0 ? 0 : y0;
        y1 = y1 > h ? h : y1;
        for (ox = 0; ox < ow; ++ox) {
            int x0 = ox * sw - pl, x1 = x0 + pw;
            x0 = x0 < 0 ? 0 : x0;
            x1 = x1 > w ? w : x1;
            for (ch = 0; ch < c; ++ch) {
                int32_t m = -128;
                for (iy = y0; iy < y1; ++iy) {
                    for (ix = x0; ix < x1; ++ix) {
                        int32_t v = x[(iy * w + ix) * c + ch];
                        m = v > m ? v : m;
                    }
                }
                y[(oy * ow + ox) * c + ch] = tml_clamp(m, lo, hi);
            }
        }
    }
}

/*@ mean
 * TFLite's int8 MEAN over H and W: y[c] = clamp(out_zp + requantize(sum x - in_zp H W)),
 * with 1/(H W) already folded into (mult, shift).
 */
static void tml_mean(const int8_t *x, int hw, int c, int32_t in_zp, int32_t mult, int32_t shift,
                     int32_t out_zp, int8_t *y)
{
    int p, ch;
    for (ch = 0; ch < c; ++ch) {
        uint32_t acc = 0u;
        for (p = 0; p < hw; ++p) {
            acc += (uint32_t)(int32_t)x[p * c + ch];
        }
        acc -= (uint32_t)in_zp * (uint32_t)hw;
        y[ch] = tml_clamp(tml_requantize((int32_t)acc, mult, shift) + out_zp, -128, 127);
    }
}

/*@ add
 * TFLite's int8 ADD: both inputs rescaled to a common scale 2 max(s_a, s_b) with
 * 20 bits of headroom, summed, rescaled to the output.
 */
static void tml_add(const int8_t *a, const int8_t *b, int n, int32_t a_zp, int32_t am, int32_t ash,
                    int32_t b_zp, int32_t bm, int32_t bsh, int32_t out_zp, int32_t om, int32_t osh,
                    int32_t lo, int32_t hi, int8_t *y)
{
    int i;
    for (i = 0; i < n; ++i) {
        int32_t sa = tml_requantize(((int32_t)a[i] - a_zp) * (1 << 20), am, ash);
        int32_t sb = tml_requantize(((int32_t)b[i] - b_zp) * (1 << 20), bm, bsh);
        y[i] = tml_clamp(tml_requantize(sa + sb, om, osh) + out_zp, lo, hi);
    }
}

/*@ rescale
 * Quantized ReLU / ReLU6: y = clamp(out_zp + requantize(x - in_zp)).
 */
static void tml_rescale(const int8_t *x, int n, int32_t in_zp, int32_t m, int32_t shift, int32_t out_zp,
                        int32_t lo, int32_t hi, int8_t *y)
{
    int i;
    for (i = 0; i < n; ++i) {
        y[i] = tml_clamp(tml_requantize((int32_t)x[i] - in_zp, m, shift) + out_zp, lo, hi);
    }
}

/*@ softmax
 * TFLite's fixed-point int8 softmax over the last axis (output scale 1/256, zero
 * point -128): x - max rescaled into Q5.26, exp in Q0.31 (gemmlowp's
 * exp_on_negative_values), summed in Q12.19, divided with a fixed-point
 * reciprocal (three Newton-Raphson steps).
 */
static inline int32_t tml_ssl(int32_t x, int e)
{
    int32_t thr = (int32_t)(((int64_t)1 << (31 - e)) - 1);
    if (x > thr) {
        return INT32_MAX;
    }
    if (x < -thr) {
        return INT32_MIN;
    }
    return (int32_t)((uint32_t)x << e);
}

static int32_t tml_exp_on_negative_values(int32_t a)
{
    static const int32_t barrel[7] = {1672461947, 1302514674, 790015084, 290630308, 39332535, 720401, 242};
    const int32_t quarter = (int32_t)1 << 24;
    const int32_t exp_minus_eighth = 1895147668, one_third = 715827883;
    int32_t a_mod = (a & (quarter - 1)) - quarter;
    int32_t r = tml_ssl(a_mod, 5) + ((int32_t)1 << 28);
    int32_t x2 = tml_srdhm(r, r), x3 = tml_srdhm(x2, r), x4 = tml_srdhm(x2, x2);
    int32_t poly = tml_rdbpot(tml_srdhm(tml_rdbpot(x4, 2) + x3, one_third) + x2, 1);
    int32_t result = exp_minus_eighth + tml_srdhm(exp_minus_eighth, r + poly);
    int32_t remainder = a_mod - a;
    int j;
    for (j = 0; j < 7; ++j) {
        if (remainder & ((int32_t)1 << (24 + j))) {
            result = tml_srdhm(result, barrel[j]);
        }
    }
    return a == 0 ? INT32_MAX : result;
}

static int32_t tml_reciprocal(int32_t x, int integer_bits, int *bits_over_unit)
{
    int headroom = 0, k;
    int64_t s;
    int32_t half_den, r;
    while (headroom < 32 && !((uint32_t)x & ((uint32_t)1 << (31 - headroom)))) {
        ++headroom;
    }
    *bits_over_unit = integer_bits - headroom;
    s = ((int64_t)x << headroom) - ((int64_t)1 << 31) + INT32_MAX;
    half_den = (int32_t)((s + (s >= 0 ? 1 : -1)) / 2);
    r = 1515870810 + tml_srdhm(half_den, -1010580540);
    for (k = 0; k < 3; ++k) {
        int32_t one_minus = ((int32_t)1 << 29) - tml_srdhm(half_den, r);
        r = r + tml_ssl(tml_srdhm(r, one_minus), 2);
    }
    return tml_ssl(r, 1);
}

static int32_t tml_rdbpot64(int32_t x, int e)
{
    int64_t x64 = x, mask = ((int64_t)1 << e) - 1;
    int64_t rem = x64 & mask, thr = (mask >> 1) + (x64 < 0 ? 1 : 0);
    return (int32_t)((x64 >> e) + (rem > thr ? 1 : 0));
}

static void tml_softmax(const int8_t *x, int rows, int depth, int32_t mult, int left_shift, int32_t diff_min,
                        int8_t *y)
{
    int r, c;
    for (r = 0; r < rows; ++r) {
        const int8_t *xr = x + r * depth;
        int8_t *yr = y + r * depth;
        int32_t mx = -128, total = 0, recip;
        int bits_over_unit, exponent;
        for (c = 0; c < depth; ++c) {
            mx = xr[c] > mx ? xr[c] : mx;
        }
        for (c = 0; c < depth; ++c) {
            int32_t d = (int32_t)xr[c] - mx;
            if (d >= diff_min) {
                total += tml_rdbpot(tml_exp_on_negative_values(tml_srdhm(d * ((int32_t)1 << left_shift), mult)), 12);
            }
        }
        recip = tml_reciprocal(total, 12, &bits_over_unit);
        exponent = bits_over_unit + 31 - 8;
        for (c = 0; c < depth; ++c) {
            int32_t d = (int32_t)xr[c] - mx;
            if (d >= diff_min) {
                int32_t e = tml_exp_on_negative_values(tml_srdhm(d * ((int32_t)1 << left_shift), mult));
                yr[c] = tml_clamp(tml_rdbpot64(tml_srdhm(recip, e), exponent) - 128, -128, 127);
            } else {
                yr[c] = -128;
            }
        }
    }
}

/*@ pad
 * Pad height and width with the zero point (the code of 0.0).
 */
static void tml_pad(const int8_t *x, int h, int w, int c, int pt, int pb, int pl, int pr, int32_t zp, int8_t *y)
{
    int oh = h + pt + pb, ow = w + pl + pr, row;
    memset(y, (int)(int8_t)zp, (size_t)oh * (size_t)ow * (size_t)c);
    for (row = 0; row < h; ++row) {
        memcpy(y + ((row + pt) * ow + pl) * c, x + row * w * c, (size_t)w * (size_t)c);
    }
}
