"""Privacy accounting for DP-SGD: Rényi differential privacy of the sampled Gaussian mechanism.

One DP-SGD step releases ``sum_i clip(g_i) + N(0, sigma^2 C^2 I)`` over a batch
drawn by **Poisson sampling**: every example joins the batch independently
with probability ``q``. Scaled by the clipping norm ``C`` this is the
*sampled Gaussian mechanism* (SGM) with sensitivity 1 and noise multiplier
``sigma``. Its Rényi divergence of order ``alpha`` (Mironov, "Rényi
Differential Privacy", CSF 2017) is

    ``RDP(alpha) = log(A_alpha) / (alpha - 1)``,
    ``A_alpha = E_{z ~ N(0, sigma^2)} [((1 - q) + q exp((2z - 1) / (2 sigma^2)))^alpha]``,

the divergence of the mixture ``(1 - q) N(0, sigma^2) + q N(1, sigma^2)``
from ``N(0, sigma^2)`` (Mironov, Talwar and Zhang, "Rényi Differential
Privacy of the Sampled Gaussian Mechanism", 2019). Two ways to compute it:

* :func:`log_a` (fast, exact): the binomial sum for integer ``alpha``
  (their Section 3.2) and the two-series erfc expansion for fractional
  ``alpha`` (their Section 3.3), both in log space;
* :func:`log_a_integral` (slow, independent): the expectation above by
  numerical quadrature, the check the tests use.

RDP composes by addition, so ``T`` steps cost ``T * RDP(alpha)``. An
``(alpha, rho)``-RDP guarantee gives ``(epsilon, delta)``-DP with

* the classic conversion (Mironov 2017, Proposition 3):
  ``epsilon = rho + log(1 / delta) / (alpha - 1)``;
* the improved conversion (Canonne, Kamath and Steinke, "The Discrete
  Gaussian for Differential Privacy", NeurIPS 2020, Proposition 12):
  ``epsilon = rho + log((alpha - 1) / alpha) - (log(delta) + log(alpha)) / (alpha - 1)``,

each minimised over a grid of orders (:data:`DEFAULT_ORDERS`). The
improved one is never larger. The guarantee assumes Poisson sampling with
rate ``q``; a fixed-size shuffled batch is a different mechanism.

>>> round(epsilon(q=0.01, sigma=4.0, steps=10_000, delta=1e-5).epsilon_classic, 2)
1.26
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, field
from typing import Iterable, Sequence

import numpy as np
from scipy import integrate, special

from ..errors import AttributeValueError

# Orders alpha > 1: fine steps where the optimum lies for large sigma or few steps, integers beyond.
DEFAULT_ORDERS: tuple[float, ...] = tuple(
    [1.0 + x / 20 for x in range(1, 20)] + [2.0 + x / 4 for x in range(0, 40)]
    + [float(a) for a in range(12, 65)] + [80.0, 96.0, 128.0, 160.0, 192.0, 256.0, 384.0, 512.0, 1024.0])


# --------------------------------------------------------------------------- checks

def _real(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise AttributeValueError(f"{what} must be a finite number, got {value!r}")
    return float(value)


def check_q(q: object) -> float:
    """The sampling rate, a number in (0, 1]."""
    v = _real(q, "the sampling rate q")
    if not 0.0 < v <= 1.0:
        raise AttributeValueError(f"the sampling rate q must lie in (0, 1] (expected batch size / dataset size), "
                                  f"got {q!r}")
    return v


def check_sigma(sigma: object) -> float:
    """The noise multiplier, a number > 0."""
    v = _real(sigma, "the noise multiplier sigma")
    if v <= 0.0:
        raise AttributeValueError(f"the noise multiplier sigma must be > 0 (noise std / clipping norm), got {sigma!r}")
    return v


def check_delta(delta: object) -> float:
    """The delta of (epsilon, delta)-DP, a number in (0, 1)."""
    v = _real(delta, "delta")
    if not 0.0 < v < 1.0:
        raise AttributeValueError(f"delta must lie in (0, 1), e.g. 1e-5 or below 1 / dataset size, got {delta!r}")
    return v


def check_steps(steps: object) -> int:
    """The number of steps, an int >= 1."""
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
        raise AttributeValueError(f"steps must be an int >= 1, got {steps!r}")
    return int(steps)


def check_orders(orders: Iterable[float] | None) -> np.ndarray:
    """Rényi orders as a float array, each a finite number > 1."""
    if orders is None:
        return np.asarray(DEFAULT_ORDERS, dtype=np.float64)
    try:
        a = np.asarray(list(orders), dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise AttributeValueError(f"orders must be numbers > 1, got {orders!r}") from None
    if a.size == 0 or not np.all(np.isfinite(a)) or np.any(a <= 1.0):
        raise AttributeValueError(f"orders must be a non-empty list of finite numbers > 1, got {orders!r}")
    return a


# --------------------------------------------------------------------------- log A_alpha

def _logsumexp_signed(logs: Sequence[float], signs: Sequence[float]) -> float:
    """``log(sum_i s_i exp(l_i))`` for signs ``s_i`` in {-1, +1}; the sum must be positive."""
    la = np.asarray(logs, dtype=np.float64)
    m = float(np.max(la))
    if not math.isfinite(m):
        return m
    total = float(np.sum(np.asarray(signs) * np.exp(la - m)))
    return m + math.log(total) if total > 0 else -math.inf


def _log_a_int(q: float, sigma: float, alpha: int) -> float:
    """``log A_alpha = log sum_k C(alpha, k) (1-q)^(alpha-k) q^k exp((k^2 - k) / (2 sigma^2))``."""
    k = np.arange(alpha + 1, dtype=np.float64)
    log_binom = special.gammaln(alpha + 1.0) - special.gammaln(k + 1.0) - special.gammaln(alpha - k + 1.0)
    terms = log_binom + k * math.log(q) + (alpha - k) * math.log1p(-q) + (k * k - k) / (2.0 * sigma * sigma)
    m = float(terms.max())
    return m + math.log(float(np.exp(terms - m).sum()))


def _log_erfc(x: float) -> float:
    """``log(erfc(x))``, stable for large ``x`` (``erfc(x) = 2 Phi(-x sqrt 2)``)."""
    return math.log(2.0) + float(special.log_ndtr(-x * math.sqrt(2.0)))


def _log_a_frac(q: float, sigma: float, alpha: float, max_terms: int = 4_000_000) -> float:
    """``log A_alpha`` for fractional ``alpha``: Mironov, Talwar and Zhang (2019), Section 3.3.

    With ``z0 = sigma^2 log(1/q - 1) + 1/2`` the integral splits at ``z0`` into two series,
    ``A = sum_i C(alpha, i) [(1-q)^(alpha-i) q^i e^((i^2-i)/(2 sigma^2)) erfc((i - z0)/(sqrt2 sigma)) / 2
    + (1-q)^i q^(alpha-i) e^((j^2-j)/(2 sigma^2)) erfc((z0 - j)/(sqrt2 sigma)) / 2]``, ``j = alpha - i``.
    The generalized binomial ``C(alpha, i) = Gamma(alpha+1) / (Gamma(i+1) Gamma(alpha-i+1))`` alternates
    in sign for ``i > alpha``, and near ``alpha = 1`` the terms shrink only polynomially, so the terms are
    summed in vectorised chunks until they fall 40 nats below the running total.
    """
    z0 = sigma * sigma * math.log(1.0 / q - 1.0) + 0.5
    s2 = 2.0 * sigma * sigma
    r2s = math.sqrt(2.0) * sigma
    lq, l1q = math.log(q), math.log1p(-q)
    logs: list[np.ndarray] = []
    signs: list[np.ndarray] = []
    running = -math.inf
    start, chunk = 0, 64
    while start < max_terms:
        i = np.arange(start, start + chunk, dtype=np.float64)
        start, chunk = start + chunk, min(2 * chunk, 65536)
        j = alpha - i
        log_c = special.gammaln(alpha + 1.0) - special.gammaln(i + 1.0) - special.gammaln(j + 1.0)
        sign = special.gammasgn(j + 1.0)
        l0 = (log_c + i * lq + j * l1q + (i * i - i) / s2 + math.log(0.5) + math.log(2.0)
              + special.log_ndtr(-(i - z0) / r2s * math.sqrt(2.0)))
        l1 = (log_c + j * lq + i * l1q + (j * j - j) / s2 + math.log(0.5) + math.log(2.0)
              + special.log_ndtr(-(z0 - j) / r2s * math.sqrt(2.0)))
        logs += [l0, l1]
        signs += [sign, sign]
        biggest = np.maximum(l0, l1)
        top = float(biggest.max())
        running = float(np.logaddexp(running, top + math.log(float(np.exp(biggest - top).sum()))))
        past = i > alpha + 1.0
        if past.any() and biggest[-1] < running - 40.0 and np.all(biggest[past][-16:] < running - 40.0):
            break
    return _logsumexp_signed(np.concatenate(logs), np.concatenate(signs))


def log_a(q: float, sigma: float, alpha: float) -> float:
    """``log A_alpha`` of one step of the sampled Gaussian mechanism (exact series).

    Args:
        q: sampling rate in (0, 1].
        sigma: noise multiplier (> 0).
        alpha: Rényi order (> 1); integers use the binomial sum, others the erfc series.
    """
    q, sigma = check_q(q), check_sigma(sigma)
    alpha = float(check_orders([alpha])[0])
    if q == 1.0:
        return alpha * (alpha - 1.0) / (2.0 * sigma * sigma)
    if alpha.is_integer():
        return _log_a_int(q, sigma, int(alpha))
    return _log_a_frac(q, sigma, alpha)


def log_a_integral(q: float, sigma: float, alpha: float) -> float:
    """``log A_alpha`` by numerical quadrature of its definition (the independent check of :func:`log_a`).

    ``A_alpha = int N(z; 0, sigma^2) ((1 - q) + q exp((2z - 1) / (2 sigma^2)))^alpha dz``, the integrand
    taken in log space and scaled by its peak so that quadrature sees values near 1.
    """
    q, sigma = check_q(q), check_sigma(sigma)
    alpha = float(check_orders([alpha])[0])

    def log_f(z: float) -> float:
        log_ratio = np.logaddexp(math.log1p(-q) if q < 1 else -math.inf,
                                 math.log(q) + (2.0 * z - 1.0) / (2.0 * sigma * sigma))
        return -z * z / (2.0 * sigma * sigma) - math.log(sigma * math.sqrt(2.0 * math.pi)) + alpha * log_ratio

    # The integrand has a bump near 0 (the N(0, s^2) mass) and one near alpha (the q^alpha term); integrate
    # over pieces one sigma wide across both, in units of the integrand's largest value.
    lo, hi = -14.0 * sigma, alpha + 14.0 * sigma + 1.0
    edges = np.linspace(lo, hi, int(math.ceil((hi - lo) / sigma)) + 1)
    peak = max(log_f(float(z)) for z in np.linspace(lo, hi, 8 * len(edges)))
    value = sum(integrate.quad(lambda z: math.exp(log_f(z) - peak), float(a), float(b), epsabs=0.0,
                               epsrel=1e-12, limit=200)[0] for a, b in zip(edges[:-1], edges[1:]))
    return peak + math.log(value)


def rdp_sampled_gaussian(q: float, sigma: float, orders: Iterable[float] | None = None) -> np.ndarray:
    """RDP of ONE step at each order: ``log(A_alpha) / (alpha - 1)``."""
    a = check_orders(orders)
    return np.array([log_a(q, sigma, float(x)) / (x - 1.0) for x in a])


def compute_rdp(q: float, sigma: float, steps: int, orders: Iterable[float] | None = None) -> np.ndarray:
    """RDP of ``steps`` composed steps at each order: ``steps * log(A_alpha) / (alpha - 1)``."""
    return check_steps(steps) * rdp_sampled_gaussian(q, sigma, orders)


# --------------------------------------------------------------------------- RDP -> (epsilon, delta)

def epsilon_classic(rdp: np.ndarray, orders: np.ndarray, delta: float) -> np.ndarray:
    """``epsilon = rho + log(1 / delta) / (alpha - 1)`` at each order (Mironov 2017, Prop. 3)."""
    return rdp + math.log(1.0 / delta) / (orders - 1.0)


def epsilon_improved(rdp: np.ndarray, orders: np.ndarray, delta: float) -> np.ndarray:
    """``epsilon = rho + log((alpha-1)/alpha) - (log delta + log alpha) / (alpha - 1)`` at each order
    (Canonne, Kamath and Steinke 2020, Prop. 12)."""
    return rdp + np.log1p(-1.0 / orders) - (math.log(delta) + np.log(orders)) / (orders - 1.0)


@dataclass(frozen=True)
class PrivacySpent:
    """An (epsilon, delta) guarantee from RDP, both conversions, and the orders that gave them.

    ``epsilon`` (improved conversion) <= ``epsilon_classic``; ``order`` is the
    minimising order of the improved conversion, ``order_classic`` that of the classic one.
    """

    epsilon: float
    epsilon_classic: float
    order: float
    order_classic: float
    delta: float
    inputs: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        d = asdict(self)
        inputs = d.pop("inputs")
        return {**inputs, **d}


def rdp_to_epsilon(rdp: Iterable[float], orders: Iterable[float] | None, delta: float) -> PrivacySpent:
    """The smallest epsilon over the orders, by both conversions.

    Args:
        rdp: the composed RDP at each order (``inf`` where it diverges).
        orders: the orders (:data:`DEFAULT_ORDERS` when None).
        delta: in (0, 1).
    """
    a = check_orders(orders)
    r = np.asarray(list(rdp), dtype=np.float64)
    if r.shape != a.shape:
        raise AttributeValueError(f"{r.size} RDP values for {a.size} orders; give one per order")
    if np.any(np.isnan(r)) or np.any(r < 0):
        raise AttributeValueError("RDP values must be >= 0 (inf allowed)")
    delta = check_delta(delta)
    if not np.any(r):  # nothing released: the conversions' slack would report a small positive epsilon
        return PrivacySpent(0.0, 0.0, float(a[-1]), float(a[-1]), delta)
    e_imp = np.maximum(epsilon_improved(r, a, delta), 0.0)
    e_cls = np.maximum(epsilon_classic(r, a, delta), 0.0)
    i, j = int(np.argmin(e_imp)), int(np.argmin(e_cls))
    return PrivacySpent(float(e_imp[i]), float(e_cls[j]), float(a[i]), float(a[j]), delta)


def epsilon(q: float, sigma: float, steps: int, delta: float,
            orders: Iterable[float] | None = None) -> PrivacySpent:
    """(epsilon, delta) of ``steps`` Poisson-sampled Gaussian steps (rate ``q``, noise multiplier ``sigma``).

    Raises:
        AttributeValueError: ``q`` outside (0, 1], ``sigma <= 0``, ``steps < 1`` or ``delta`` outside (0, 1).
    """
    q, sigma, steps, delta = check_q(q), check_sigma(sigma), check_steps(steps), check_delta(delta)
    a = check_orders(orders)
    spent = rdp_to_epsilon(compute_rdp(q, sigma, steps, a), a, delta)
    return PrivacySpent(spent.epsilon, spent.epsilon_classic, spent.order, spent.order_classic, delta,
                        {"q": q, "sigma": sigma, "steps": steps})


def noise_multiplier_for(target_epsilon: float, q: float, steps: int, delta: float,
                         orders: Iterable[float] | None = None, tol: float = 1e-4,
                         classic: bool = False) -> float:
    """The smallest noise multiplier whose ``epsilon`` (improved; classic with ``classic=True``) is at most
    ``target_epsilon``, by bisection (epsilon falls as sigma grows).

    Returns a sigma with ``epsilon(sigma) <= target_epsilon`` within ``tol`` of the boundary.
    """
    target = _real(target_epsilon, "target_epsilon")
    if target <= 0.0:
        raise AttributeValueError(f"target_epsilon must be > 0, got {target_epsilon!r}")
    q, steps, delta = check_q(q), check_steps(steps), check_delta(delta)
    a = check_orders(orders)

    def eps_of(sigma: float) -> float:
        spent = rdp_to_epsilon(compute_rdp(q, sigma, steps, a), a, delta)
        return spent.epsilon_classic if classic else spent.epsilon

    lo, hi = 1e-3, 1.0
    while eps_of(hi) > target:
        lo, hi = hi, hi * 2.0
        if hi > 1e6:
            raise AttributeValueError(f"no noise multiplier up to 1e6 reaches epsilon {target:g} with q={q:g}, "
                                      f"{steps} steps, delta={delta:g}; raise the target or lower q or the steps")
    if eps_of(lo) <= target:
        return lo
    while hi - lo > tol * hi:
        mid = 0.5 * (lo + hi)
        if eps_of(mid) > target:
            lo = mid
        else:
            hi = mid
    return hi


dp_epsilon = epsilon  # the name :mod:`tinyml_lab.mlops` exports it under


# --------------------------------------------------------------------------- the running account

class RDPAccountant:
    """The privacy spent so far by a sequence of sampled Gaussian steps (possibly with different q and sigma).

    >>> acc = RDPAccountant()
    >>> acc.step(q=0.01, sigma=1.1, count=100)       # doctest: +SKIP
    >>> acc.get_epsilon(1e-5).epsilon                 # doctest: +SKIP

    Attributes:
        rdp_: the composed RDP at each order.
        steps_: how many steps have been composed.
    """

    def __init__(self, orders: Iterable[float] | None = None):
        self.orders = check_orders(orders)
        self.rdp_ = np.zeros_like(self.orders)
        self.steps_ = 0
        self._cache: dict[tuple[float, float], np.ndarray] = {}

    def step(self, q: float, sigma: float, count: int = 1) -> "RDPAccountant":
        """Compose ``count`` steps of rate ``q`` and noise multiplier ``sigma``."""
        key = (check_q(q), check_sigma(sigma))
        count = check_steps(count)
        if key not in self._cache:
            self._cache[key] = rdp_sampled_gaussian(key[0], key[1], self.orders)
        self.rdp_ = self.rdp_ + count * self._cache[key]
        self.steps_ += count
        return self

    def get_epsilon(self, delta: float) -> PrivacySpent:
        """The (epsilon, delta) guarantee of every step composed so far (0 before any step)."""
        return rdp_to_epsilon(self.rdp_, self.orders, delta)


__all__ = ["DEFAULT_ORDERS", "log_a", "log_a_integral", "rdp_sampled_gaussian", "compute_rdp", "epsilon_classic",
           "epsilon_improved", "PrivacySpent", "rdp_to_epsilon", "epsilon", "dp_epsilon", "noise_multiplier_for", "RDPAccountant"]
