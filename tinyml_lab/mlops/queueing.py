"""Requests queueing at model replicas: M/M/c formulas, a first-come-first-served simulator, capacity planning.

Requests arrive as a Poisson process of rate $\\lambda$, each needs an exponential service time
of mean $1/\\mu$, and $c$ identical replicas serve them first come, first served (the M/M/c
queue of Kleinrock, 1975). With utilisation $\\rho = \\lambda / (c\\mu) < 1$:

* the probability that a request has to wait is Erlang's C formula, computed here through the
  numerically stable Erlang B recursion;
* a wait exceeds $t$ with probability $C e^{-(c\\mu - \\lambda) t}$, so the mean wait is
  $C / (c\\mu - \\lambda)$;
* the response time (wait plus service) has a closed-form tail, whose quantiles
  :meth:`QueueStats.response_quantile` finds by bisection; for one replica it is exponential
  with rate $\\mu - \\lambda$;
* Little's law, $L = \\lambda W$, gives the mean number of requests in the system.

:func:`simulate` replays given arrival and service times through $c$ replicas, with no
assumption on their distributions, so the formulas can be checked against it and it can be
used where they do not apply (deterministic service, bursts). :func:`replicas_for` is the
capacity question an autoscaler answers: the fewest replicas that keep a latency quantile under
a target.

>>> q = mmc(arrival_rate=80.0, service_rate=100.0)      # one replica, 80 % busy
>>> round(q.mean_response, 4), round(q.response_quantile(0.99), 4)
(0.05, 0.2303)
>>> replicas_for(arrival_rate=80.0, service_rate=100.0, target_s=0.05, quantile=0.99)
3
"""

from __future__ import annotations

import heapq
import math
import numbers
from dataclasses import dataclass

import numpy as np

from ..errors import AttributeValueError, DataError, ShapeError


def _rate(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise AttributeValueError(f"{what} must be a positive finite number (per second), got {value!r}")
    return float(value)


def _servers(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise AttributeValueError(f"servers must be a positive integer (replicas), got {value!r}")
    return int(value)


def _probability(p: object) -> float:
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0 < p < 1:
        raise AttributeValueError(f"quantile must lie strictly between 0 and 1 (e.g. 0.99), got {p!r}")
    return float(p)


def erlang_c(servers: int, offered_load: float) -> float:
    """Probability that a request waits in an M/M/c queue: Erlang's C formula.

    $C(c, a) = B / (1 - \\rho (1 - B))$ with $\\rho = a/c$ and $B$ the Erlang B blocking
    probability, from the recursion $B_0 = 1$, $B_k = a B_{k-1} / (k + a B_{k-1})$.

    Args:
        servers: the number of replicas $c$.
        offered_load: $a = \\lambda / \\mu$, the mean number of busy replicas; below ``servers``.

    Returns:
        The probability, in [0, 1).
    """
    c = _servers(servers)
    a = _rate(offered_load, "offered_load")
    if a >= c:
        raise AttributeValueError(f"offered load {a:g} needs more than {c} replica(s): the queue grows without "
                                  f"bound; use at least {math.floor(a) + 1} replicas")
    b = 1.0
    for k in range(1, c + 1):
        b = a * b / (k + a * b)
    rho = a / c
    return b / (1.0 - rho * (1.0 - b))


@dataclass(frozen=True)
class QueueStats:
    """Steady-state figures of an M/M/c queue (times in seconds)."""

    servers: int
    arrival_rate: float
    service_rate: float
    utilisation: float        # rho = lambda / (c mu)
    wait_probability: float   # Erlang C
    mean_wait: float          # time in the queue, before service starts
    mean_response: float      # wait + service
    mean_in_system: float     # Little's law: lambda * mean_response

    @property
    def _drain_rate(self) -> float:
        return self.servers * self.service_rate - self.arrival_rate

    def wait_tail(self, t: float) -> float:
        """$P(W > t) = C e^{-(c\\mu - \\lambda) t}$ for $t \\ge 0$."""
        return self.wait_probability * math.exp(-self._drain_rate * max(float(t), 0.0))

    def response_tail(self, t: float) -> float:
        """$P(R > t)$ for the response time $R = W + S$ (wait plus an exponential service)."""
        t = max(float(t), 0.0)
        mu, theta, c = self.service_rate, self._drain_rate, self.wait_probability
        if math.isclose(theta, mu, rel_tol=1e-9):
            both = (1.0 + mu * t) * math.exp(-mu * t)
        else:  # the sum of two independent exponentials of rates theta and mu
            both = (theta * math.exp(-mu * t) - mu * math.exp(-theta * t)) / (theta - mu)
        return (1.0 - c) * math.exp(-mu * t) + c * both

    def wait_quantile(self, p: float) -> float:
        """The ``p``-quantile of the waiting time (zero when at least a fraction ``p`` does not wait)."""
        p = _probability(p)
        if 1.0 - p >= self.wait_probability:
            return 0.0
        return math.log(self.wait_probability / (1.0 - p)) / self._drain_rate

    def response_quantile(self, p: float) -> float:
        """The ``p``-quantile of the response time, e.g. ``p = 0.99`` for the p99 latency."""
        p = _probability(p)
        lo, hi = 0.0, 1.0 / self.service_rate
        while self.response_tail(hi) > 1.0 - p:
            hi *= 2.0
        for _ in range(200):  # bisection on a decreasing tail, to float precision
            mid = 0.5 * (lo + hi)
            if self.response_tail(mid) > 1.0 - p:
                lo = mid
            else:
                hi = mid
            if hi - lo <= 1e-12 * hi:
                break
        return hi


def mmc(arrival_rate: float, service_rate: float, servers: int = 1) -> QueueStats:
    """Steady state of the M/M/c queue: Poisson arrivals, exponential service, ``servers`` replicas.

    Args:
        arrival_rate: $\\lambda$, requests per second.
        service_rate: $\\mu$, requests per second one replica completes (1 / mean service time).
        servers: $c$, the number of replicas.

    Returns:
        A :class:`QueueStats`. Raises :class:`AttributeValueError` when $\\lambda \\ge c\\mu$.
    """
    lam = _rate(arrival_rate, "arrival_rate")
    mu = _rate(service_rate, "service_rate")
    c = _servers(servers)
    if lam >= c * mu:
        raise AttributeValueError(f"arrival rate {lam:g}/s is at or above the capacity of {c} replica(s) "
                                  f"({c * mu:g}/s): the queue grows without bound; use at least "
                                  f"{math.floor(lam / mu) + 1} replicas")
    pw = erlang_c(c, lam / mu)
    wait = pw / (c * mu - lam)
    response = wait + 1.0 / mu
    return QueueStats(c, lam, mu, lam / (c * mu), pw, wait, response, lam * response)


def replicas_for(arrival_rate: float, service_rate: float, target_s: float, quantile: float = 0.99,
                 max_replicas: int = 100_000) -> int:
    """The fewest replicas that keep the ``quantile`` of the response time at or below ``target_s``.

    Args:
        arrival_rate: requests per second.
        service_rate: requests per second one replica completes.
        target_s: the latency target in seconds.
        quantile: which quantile the target applies to (0.99 for p99).
        max_replicas: give up beyond this many.

    Returns:
        The number of replicas $c$.
    """
    lam = _rate(arrival_rate, "arrival_rate")
    mu = _rate(service_rate, "service_rate")
    target = _rate(target_s, "target_s")
    p = _probability(quantile)
    service_only = -math.log(1.0 - p) / mu
    if service_only >= target:
        raise AttributeValueError(f"the service time alone has a {p:g}-quantile of {service_only:.4g} s, above the "
                                  f"target {target:g} s: no number of replicas helps; make one request faster")
    c = math.floor(lam / mu) + 1
    while c <= max_replicas:
        if mmc(lam, mu, c).response_quantile(p) <= target:
            return c
        c += 1
    raise AttributeValueError(f"more than {max_replicas} replicas needed for {lam:g} requests/s; "
                              "raise max_replicas or relax the target")


def poisson_arrivals(rate: float, n: int, seed: int = 0) -> np.ndarray:
    """Arrival times (seconds, increasing) of ``n`` requests of a Poisson process of ``rate`` per second."""
    lam = _rate(rate, "rate")
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise AttributeValueError(f"n must be a positive integer, got {n!r}")
    return np.cumsum(np.random.default_rng(seed).exponential(1.0 / lam, int(n)))


@dataclass(frozen=True)
class SimulationResult:
    """Per-request times of a simulated queue (seconds), in arrival order."""

    waits: np.ndarray
    responses: np.ndarray
    servers: int
    busy_fraction: float  # total service time / (servers * time from first arrival to last departure)

    def quantile(self, p: float) -> float:
        """The ``p``-quantile of the response times."""
        return float(np.quantile(self.responses, _probability(p)))

    @property
    def mean_response(self) -> float:
        return float(self.responses.mean())


def simulate(arrival_times, service_times, servers: int = 1) -> SimulationResult:
    """Replay requests through ``servers`` replicas, first come first served.

    Each request starts on the replica that frees first, at the later of its arrival and that
    replica's free time: $start_i = \\max(a_i, \\min_k free_k)$, $free_k \\leftarrow start_i + s_i$.

    Args:
        arrival_times: (N,) non-decreasing arrival times in seconds.
        service_times: (N,) non-negative service times in seconds.
        servers: the number of replicas.

    Returns:
        A :class:`SimulationResult`.
    """
    c = _servers(servers)
    a = np.asarray(arrival_times, dtype=np.float64)
    s = np.asarray(service_times, dtype=np.float64)
    if a.ndim != 1 or s.ndim != 1 or a.shape != s.shape:
        raise ShapeError(f"arrival_times and service_times must be 1-D arrays of one length, got shapes "
                         f"{a.shape} and {s.shape}")
    if a.size == 0:
        raise DataError("no requests to simulate; give at least one arrival")
    if not (np.isfinite(a).all() and np.isfinite(s).all()):
        raise DataError("arrival_times and service_times must be finite")
    if (np.diff(a) < 0).any():
        raise DataError("arrival_times must be non-decreasing; sort the requests by arrival first")
    if (s < 0).any():
        raise DataError("service_times must be non-negative")
    free = [float(a[0])] * c
    heapq.heapify(free)
    starts = np.empty_like(a)
    for i in range(a.size):
        start = max(a[i], heapq.heappop(free))
        starts[i] = start
        heapq.heappush(free, start + s[i])
    waits = starts - a
    responses = waits + s
    span = float((starts + s).max() - a[0])
    busy = float(s.sum()) / (c * span) if span > 0 else 0.0
    return SimulationResult(waits, responses, c, busy)
