"""Rollout strategies: how a new model version reaches a fleet, and when it is taken back.

Every strategy has the same verbs. ``start(control, candidate, devices,
step, seed)`` begins a rollout of ``candidate`` over the fleet that runs
``control``; at each step ``route(device, step)`` says which version a device
serves (and which it runs beside, in shadow); ``observe(outcomes)`` takes
the labelled results of that step; ``decide(step)`` returns a
:class:`Decision` when the strategy acts (expand, promote, roll back, keep,
report). ``status_`` is ``"running"`` until the rollout ends as
``"promoted"``, ``"rolled_back"``, ``"kept"`` (no significant difference:
the control stays) or ``"evaluated"`` (a shadow, which never serves).

* :class:`Direct` (``"none"``): every device serves the candidate at once.
* :class:`Shadow`: the candidate runs beside the control on every device;
  its predictions are logged and compared (McNemar's exact test on the
  labelled samples where the two disagree; McNemar 1947), never served.
* :class:`Canary`: a seeded cohort serves the candidate, growing by
  ``stages``; at each stage, once the cohort has ``min_samples`` labelled
  samples, the candidate's accuracy is compared with the rest of the fleet's
  (the concurrent control). It is rolled back if it is worse by more than
  ``margin`` *and* a one-sided two-proportion z-test says it is worse
  (``p < alpha``); otherwise the cohort grows, and at the last stage the
  candidate is promoted.
* :class:`ABTest`: a seeded random split of the devices; when both arms have
  ``n_per_arm`` labelled samples, one two-sided two-proportion z-test
  decides (no peeking before): promote B, keep A, or report no difference.
  :func:`ab_sample_size` gives ``n_per_arm`` for a difference to detect.
* :class:`ThompsonBandit` (Thompson 1933): each device, each step, serves the version whose
  draw from its Beta posterior of accuracy is highest
  (``theta_k ~ Beta(1 + correct_k, 1 + wrong_k)``); traffic concentrates
  on the better version as evidence accrues. It ends when one version's
  posterior probability of being best reaches ``threshold``.

The statistics (:func:`two_proportion_z`, :func:`mcnemar_exact`) are plain
functions, checked in the tests against scipy's chi-square and binomial tests.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np
from scipy import stats

from ..errors import AttributeValueError

STRATEGIES = ("none", "shadow", "canary", "ab", "bandit")
ENDS = ("promoted", "rolled_back", "kept", "evaluated")


# --------------------------------------------------------------------------- statistics

def two_proportion_z(correct_a: int, n_a: int, correct_b: int, n_b: int) -> tuple[float, float]:
    """Pooled two-proportion z-test of ``p_a = p_b``.

    ``z = (p_b - p_a) / sqrt(p (1 - p) (1/n_a + 1/n_b))`` with the pooled
    ``p = (c_a + c_b) / (n_a + n_b)``; ``z > 0`` when B does better.

    Returns:
        ``(z, p_two_sided)``; ``(0, 1)`` when the pooled proportion is 0 or 1.
    """
    for v, what in ((correct_a, "correct_a"), (n_a, "n_a"), (correct_b, "correct_b"), (n_b, "n_b")):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 0:
            raise AttributeValueError(f"{what} must be a count >= 0, got {v!r}")
    if n_a == 0 or n_b == 0 or correct_a > n_a or correct_b > n_b:
        raise AttributeValueError(f"need 0 <= correct <= n and n >= 1 in both arms, got {correct_a}/{n_a} and "
                                  f"{correct_b}/{n_b}")
    p = (correct_a + correct_b) / (n_a + n_b)
    if p in (0.0, 1.0):
        return 0.0, 1.0
    se = math.sqrt(p * (1 - p) * (1 / n_a + 1 / n_b))
    z = (correct_b / n_b - correct_a / n_a) / se
    return float(z), float(2 * stats.norm.sf(abs(z)))


def mcnemar_exact(b: int, c: int) -> float:
    """Exact McNemar test for paired outcomes: two-sided binomial p-value of ``b`` successes in ``b + c``
    trials at 1/2 (``b``: only the second model right, ``c``: only the first). 1.0 when ``b + c = 0``."""
    if b + c == 0:
        return 1.0
    return float(stats.binomtest(int(b), int(b + c), 0.5).pvalue)


def ab_sample_size(p_a: float, p_b: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Labelled samples per arm for a two-sided two-proportion z-test to detect ``p_a != p_b``:

    ``n = (z_{1-alpha/2} sqrt(2 p (1-p)) + z_{power} sqrt(p_a (1-p_a) + p_b (1-p_b)))^2 / (p_a - p_b)^2``,
    ``p = (p_a + p_b) / 2``.
    """
    for v, what in ((p_a, "p_a"), (p_b, "p_b"), (alpha, "alpha"), (power, "power")):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not 0 < v < 1:
            raise AttributeValueError(f"{what} must be strictly between 0 and 1, got {v!r}")
    if p_a == p_b:
        raise AttributeValueError("p_a equals p_b: no sample size detects a difference of zero")
    p = (p_a + p_b) / 2
    za, zb = stats.norm.ppf(1 - alpha / 2), stats.norm.ppf(power)
    n = (za * math.sqrt(2 * p * (1 - p)) + zb * math.sqrt(p_a * (1 - p_a) + p_b * (1 - p_b))) ** 2 / (p_a - p_b) ** 2
    return int(math.ceil(n))


# --------------------------------------------------------------------------- records

@dataclass(frozen=True)
class Route:
    """What a device does at one step: ``serve`` answers; ``shadow`` (if any) runs beside, logged only."""

    serve: str
    shadow: str | None = None


@dataclass(frozen=True)
class Outcome:
    """Labelled results of one device at one step for one version.

    ``correct`` of ``labelled`` samples were right. For a shadow version
    (``served=False``), ``wins`` counts labelled samples it got right and the
    served version wrong, ``losses`` the reverse (the discordant pairs).
    """

    device: int
    version: str
    correct: int
    labelled: int
    served: bool = True
    wins: int = 0
    losses: int = 0


@dataclass(frozen=True)
class Decision:
    """What a strategy did at a step: ``action`` (start, expand, promote, rollback, keep, report) and why."""

    step: int
    strategy: str
    action: str
    detail: str
    stats: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"step": self.step, "strategy": self.strategy, "action": self.action, "detail": self.detail,
                "stats": {k: (round(v, 6) if isinstance(v, float) else v) for k, v in self.stats.items()}}


class _Counts:
    """Correct and labelled counts per version."""

    def __init__(self) -> None:
        self.correct: dict[str, int] = {}
        self.labelled: dict[str, int] = {}

    def add(self, version: str, correct: int, labelled: int) -> None:
        self.correct[version] = self.correct.get(version, 0) + int(correct)
        self.labelled[version] = self.labelled.get(version, 0) + int(labelled)

    def n(self, version: str) -> int:
        return self.labelled.get(version, 0)

    def c(self, version: str) -> int:
        return self.correct.get(version, 0)

    def accuracy(self, version: str) -> float:
        n = self.n(version)
        return self.c(version) / n if n else float("nan")


def _check_unit(value: object, what: str, closed_right: bool = False) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and value > 0 and (value <= 1 if closed_right else value < 1)
    if not ok:
        raise AttributeValueError(f"{what} must be in (0, {'1]' if closed_right else '1)'}, got {value!r}")
    return float(value)


def _check_int(value: object, what: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise AttributeValueError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return int(value)


# --------------------------------------------------------------------------- strategies

class Rollout:
    """The common interface (see the module docstring); subclasses set ``name`` and the routing rule."""

    name = "rollout"
    min_devices = 1

    def start(self, control: str, candidate: str, devices: Sequence[int], step: int = 0,
              seed: int = 0) -> "Rollout":
        """Begin rolling ``candidate`` out over ``devices`` (all running ``control``); returns self."""
        devices = [int(d) for d in devices]
        if len(devices) < self.min_devices:
            raise AttributeValueError(f"the {self.name} rollout needs at least {self.min_devices} devices, "
                                      f"got {len(devices)}")
        if len(set(devices)) != len(devices):
            raise AttributeValueError("devices must not repeat")
        if control == candidate:
            raise AttributeValueError(f"candidate and control are the same version {control!r}")
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise AttributeValueError(f"seed must be an int >= 0, got {seed!r}")
        self.control_, self.candidate_ = str(control), str(candidate)
        self.devices_ = devices
        self.seed_ = int(seed)
        self.started_ = int(step)
        self.status_ = "running"
        self.winner_: str | None = None
        self.counts_ = _Counts()
        self.routes_: dict[str, int] = {}
        self.decisions_: list[Decision] = []
        self._begin()
        self._log(step, "start", f"{self.candidate_} against {self.control_} on {len(devices)} devices")
        return self

    def _begin(self) -> None:
        pass

    @property
    def running(self) -> bool:
        return getattr(self, "status_", None) == "running"

    def _check_running(self) -> None:
        if not hasattr(self, "status_"):
            raise AttributeValueError(f"{type(self).__name__} has not started; call start(control, candidate, "
                                      f"devices) first")

    def route(self, device: int, step: int) -> Route:
        """The version ``device`` serves at ``step`` (and the one it shadows)."""
        self._check_running()
        if not self.running:
            return Route(self.winner_ or self.control_)
        r = self._route(int(device), int(step))
        self.routes_[r.serve] = self.routes_.get(r.serve, 0) + 1
        return r

    def _route(self, device: int, step: int) -> Route:
        raise NotImplementedError

    def observe(self, outcomes: Iterable[Outcome]) -> None:
        """Take one step's labelled outcomes (served and shadow)."""
        self._check_running()
        for o in outcomes:
            if o.served:
                self.counts_.add(o.version, o.correct, o.labelled)
            self._observe(o)

    def _observe(self, o: Outcome) -> None:
        pass

    def decide(self, step: int) -> Decision | None:
        """Act on what has been observed; a :class:`Decision` when something changes, else None."""
        self._check_running()
        if not self.running:
            return None
        return self._decide(int(step))

    def _decide(self, step: int) -> Decision | None:
        raise NotImplementedError

    def _log(self, step: int, action: str, detail: str, **figures) -> Decision:
        d = Decision(step, self.name, action, detail, figures)
        self.decisions_.append(d)
        return d

    def _end(self, step: int, status: str, action: str, detail: str, **figures) -> Decision:
        self.status_ = status
        self.winner_ = self.candidate_ if status == "promoted" else self.control_
        return self._log(step, action, detail, **figures)

    def traffic(self) -> dict[str, float]:
        """Share of routed device-steps per served version since the start."""
        total = sum(self.routes_.values())
        return {v: n / total for v, n in sorted(self.routes_.items())} if total else {}

    def summary(self) -> dict:
        self._check_running()
        return {"strategy": self.name, "control": self.control_, "candidate": self.candidate_,
                "status": self.status_, "winner": self.winner_,
                "accuracy": {v: round(self.counts_.accuracy(v), 6) for v in sorted(self.counts_.labelled)},
                "labelled": dict(sorted(self.counts_.labelled.items())), "traffic": self.traffic(),
                "decisions": [d.to_json() for d in self.decisions_]}

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.endswith("_") and
                           not k.startswith("_"))
        return f"{type(self).__name__}({params})"


class Direct(Rollout):
    """No strategy: every device serves the candidate from the first step; promoted as soon as it serves
    anywhere (a device that could not install it keeps asking for it)."""

    name = "none"

    def _route(self, device: int, step: int) -> Route:
        return Route(self.candidate_)

    def _decide(self, step: int) -> Decision | None:
        if self.counts_.n(self.candidate_) == 0:
            return None
        return self._end(step, "promoted", "promote", "pushed to every device at once")


class Shadow(Rollout):
    """The candidate runs beside the control on every device, logged and never served.

    After ``min_samples`` labelled samples, McNemar's exact test on the
    discordant pairs says whether the candidate would do better, worse or the
    same; the rollout ends ``"evaluated"`` with the control still serving.

    Args:
        min_samples: labelled samples before the verdict.
        alpha: significance level of the verdict.
    """

    name = "shadow"

    def __init__(self, min_samples: int = 200, alpha: float = 0.05):
        self.min_samples = _check_int(min_samples, "min_samples")
        self.alpha = _check_unit(alpha, "alpha")

    def _begin(self) -> None:
        self.shadow_ = _Counts()
        self.wins_ = self.losses_ = 0

    def _route(self, device: int, step: int) -> Route:
        return Route(self.control_, shadow=self.candidate_)

    def _observe(self, o: Outcome) -> None:
        if not o.served and o.version == self.candidate_:
            self.shadow_.add(o.version, o.correct, o.labelled)
            self.wins_ += int(o.wins)
            self.losses_ += int(o.losses)

    def _decide(self, step: int) -> Decision | None:
        n = self.shadow_.n(self.candidate_)
        if n < self.min_samples:
            return None
        p = mcnemar_exact(self.wins_, self.losses_)
        acc_s, acc_c = self.shadow_.accuracy(self.candidate_), self.counts_.accuracy(self.control_)
        verdict = "no difference"
        if p < self.alpha:
            verdict = "better" if self.wins_ > self.losses_ else "worse"
        d = self._end(step, "evaluated", "report",
                      f"shadow {self.candidate_} {acc_s:.1%} vs served {self.control_} {acc_c:.1%} on {n} labelled "
                      f"samples: {verdict} (McNemar p = {p:.3g}); never served",
                      shadow_accuracy=acc_s, control_accuracy=acc_c, wins=self.wins_, losses=self.losses_,
                      p_value=p, verdict=verdict)
        self.verdict_ = verdict
        return d

    def summary(self) -> dict:
        out = super().summary()
        if hasattr(self, "shadow_"):
            out["shadow_accuracy"] = round(self.shadow_.accuracy(self.candidate_), 6)
            out["shadow_labelled"] = self.shadow_.n(self.candidate_)
            out["verdict"] = getattr(self, "verdict_", None)
        return out


class Canary(Rollout):
    """A growing cohort serves the candidate; rolled back as soon as it is significantly and materially worse.

    Args:
        stages: cohort sizes as fractions of the fleet, increasing, ending at 1.
        min_samples: labelled candidate samples a stage collects before it is judged.
        margin: the accuracy drop (candidate below control) tolerated.
        alpha: level of the one-sided two-proportion z-test of "candidate worse".
    """

    name = "canary"
    min_devices = 2

    def __init__(self, stages: Sequence[float] = (0.1, 0.25, 0.5, 1.0), min_samples: int = 64,
                 margin: float = 0.02, alpha: float = 0.05):
        st = tuple(_check_unit(s, "each canary stage", closed_right=True) for s in stages)
        if not st or list(st) != sorted(set(st)) or st[-1] != 1.0:
            raise AttributeValueError(f"stages must increase strictly and end at 1.0, got {tuple(stages)!r}")
        self.stages = st
        self.min_samples = _check_int(min_samples, "min_samples")
        if isinstance(margin, bool) or not isinstance(margin, numbers.Real) or not 0 <= margin < 1:
            raise AttributeValueError(f"margin must be in [0, 1), got {margin!r}")
        self.margin = float(margin)
        self.alpha = _check_unit(alpha, "alpha")

    def _begin(self) -> None:
        self.order_ = [int(d) for d in np.random.default_rng([self.seed_, 77]).permutation(self.devices_)]
        self.stage_ = 0
        self.stage_counts_ = _Counts()
        self.exposed_: set[int] = set()
        self._set_cohort()

    def cohort_size(self, stage: int) -> int:
        """Devices serving the candidate at ``stage``: ``ceil(f N)``, at least 1, and short of the whole fleet
        before the last stage (a control must remain to compare with)."""
        n = len(self.devices_)
        if self.stages[stage] >= 1.0:
            return n
        return min(max(1, math.ceil(self.stages[stage] * n)), n - 1)

    def _set_cohort(self) -> None:
        self.cohort_ = set(self.order_[: self.cohort_size(self.stage_)])
        self.exposed_ |= self.cohort_

    def _route(self, device: int, step: int) -> Route:
        return Route(self.candidate_ if device in self.cohort_ else self.control_)

    def _observe(self, o: Outcome) -> None:
        if o.served:
            self.stage_counts_.add(o.version, o.correct, o.labelled)

    def _decide(self, step: int) -> Decision | None:
        if self.cohort_size(self.stage_) == len(self.devices_):
            return self._end(step, "promoted", "promote", f"{self.candidate_} serves the whole fleet",
                             exposed=len(self.exposed_))
        s = self.stage_counts_
        cand, ctrl = self.candidate_, self.control_
        if s.n(cand) < self.min_samples or s.n(ctrl) < 1:
            return None
        z, _ = two_proportion_z(s.c(ctrl), s.n(ctrl), s.c(cand), s.n(cand))
        p_worse = float(stats.norm.cdf(z))  # one-sided: H1 candidate below control
        drop = s.accuracy(ctrl) - s.accuracy(cand)
        figures = dict(stage=self.stage_, cohort=len(self.cohort_), candidate_accuracy=s.accuracy(cand),
                       control_accuracy=s.accuracy(ctrl), n_candidate=s.n(cand), n_control=s.n(ctrl), z=z,
                       p_worse=p_worse, exposed=len(self.exposed_))
        if drop > self.margin and p_worse < self.alpha:
            return self._end(step, "rolled_back", "rollback",
                             f"{cand} {s.accuracy(cand):.1%} vs control {s.accuracy(ctrl):.1%} on the cohort of "
                             f"{len(self.cohort_)} (drop {drop:.1%} > {self.margin:.0%}, one-sided p = "
                             f"{p_worse:.3g}); {len(self.exposed_)} of {len(self.devices_)} devices ever ran it",
                             **figures)
        self.stage_ += 1
        self.stage_counts_ = _Counts()
        self._set_cohort()
        if self.cohort_size(self.stage_) == len(self.devices_):
            return self._end(step, "promoted", "promote",
                             f"{cand} {s.accuracy(cand):.1%} vs control {s.accuracy(ctrl):.1%}: not worse; "
                             f"serves the whole fleet", **figures)
        return self._log(step, "expand", f"{cand} {s.accuracy(cand):.1%} vs control {s.accuracy(ctrl):.1%}: "
                         f"not worse; cohort grows to {len(self.cohort_)} devices", **figures)


class ABTest(Rollout):
    """A seeded random split of the devices, one significance test at a fixed sample size.

    Args:
        split: share of the devices in arm B (the candidate).
        n_per_arm: labelled samples each arm collects before the one test.
        alpha: level of the two-sided two-proportion z-test.
    """

    name = "ab"
    min_devices = 2

    def __init__(self, split: float = 0.5, n_per_arm: int = 400, alpha: float = 0.05):
        self.split = _check_unit(split, "split")
        self.n_per_arm = _check_int(n_per_arm, "n_per_arm")
        self.alpha = _check_unit(alpha, "alpha")

    def _begin(self) -> None:
        order = np.random.default_rng([self.seed_, 91]).permutation(self.devices_)
        n_b = min(max(1, int(round(self.split * len(order)))), len(order) - 1)
        self.arm_b_ = {int(d) for d in order[:n_b]}

    def _route(self, device: int, step: int) -> Route:
        return Route(self.candidate_ if device in self.arm_b_ else self.control_)

    def _decide(self, step: int) -> Decision | None:
        c = self.counts_
        a, b = self.control_, self.candidate_
        if c.n(a) < self.n_per_arm or c.n(b) < self.n_per_arm:
            return None
        z, p = two_proportion_z(c.c(a), c.n(a), c.c(b), c.n(b))
        figures = dict(accuracy_a=c.accuracy(a), accuracy_b=c.accuracy(b), n_a=c.n(a), n_b=c.n(b), z=z, p_value=p)
        text = f"A {a} {c.accuracy(a):.1%} (n={c.n(a)}) vs B {b} {c.accuracy(b):.1%} (n={c.n(b)}), p = {p:.3g}"
        if p < self.alpha and z > 0:
            return self._end(step, "promoted", "promote", text + ": B is better", **figures)
        if p < self.alpha:
            return self._end(step, "rolled_back", "rollback", text + ": B is worse", **figures)
        return self._end(step, "kept", "keep", text + ": no significant difference, A stays", **figures)


class ThompsonBandit(Rollout):
    """Beta-Bernoulli Thompson sampling over the model versions, per device and step.

    Each version ``k`` has the posterior ``Beta(1 + c_k, 1 + n_k - c_k)``
    of its accuracy. A device at a step draws one ``theta_k`` per version
    (from ``rng([seed, step, device])``) and serves the argmax. The rollout
    ends when ``P(version is best)`` (Monte Carlo, ``draws`` samples) reaches
    ``threshold`` after ``min_samples`` labelled samples, or picks the best
    posterior mean after ``max_steps``.

    Args:
        threshold: posterior probability of being best that ends the rollout.
        min_samples: labelled samples before it may end.
        max_steps: steps after which it ends regardless (None: never).
        draws: Monte Carlo samples for ``P(best)``.
    """

    name = "bandit"

    def __init__(self, threshold: float = 0.95, min_samples: int = 200, max_steps: int | None = None,
                 draws: int = 4000):
        self.threshold = _check_unit(threshold, "threshold")
        self.min_samples = _check_int(min_samples, "min_samples")
        self.max_steps = None if max_steps is None else _check_int(max_steps, "max_steps")
        self.draws = _check_int(draws, "draws", 10)

    def _begin(self) -> None:
        self.arms_ = [self.control_, self.candidate_]

    def posterior(self) -> dict[str, tuple[int, int]]:
        """``{version: (alpha, beta)}`` of each version's Beta posterior."""
        c = self.counts_
        return {v: (1 + c.c(v), 1 + c.n(v) - c.c(v)) for v in self.arms_}

    def _route(self, device: int, step: int) -> Route:
        rng = np.random.default_rng([self.seed_, step, device])
        theta = [rng.beta(a, b) for a, b in self.posterior().values()]
        return Route(self.arms_[int(np.argmax(theta))])

    def prob_best(self, step: int = 0) -> dict[str, float]:
        """``P(theta_k is the largest)`` per version, by ``draws`` seeded Monte Carlo samples."""
        rng = np.random.default_rng([self.seed_, step, 2**31 - 1])
        samples = np.stack([rng.beta(a, b, self.draws) for a, b in self.posterior().values()])
        wins = np.bincount(np.argmax(samples, axis=0), minlength=len(self.arms_)) / self.draws
        return {v: float(w) for v, w in zip(self.arms_, wins)}

    def _decide(self, step: int) -> Decision | None:
        n = sum(self.counts_.n(v) for v in self.arms_)
        pb = self.prob_best(step)
        best = max(self.arms_, key=lambda v: (pb[v], v == self.control_))
        timeout = self.max_steps is not None and step - self.started_ + 1 >= self.max_steps
        if not timeout and (n < self.min_samples or pb[best] < self.threshold):
            return None
        if timeout and pb[best] < self.threshold:
            best = max(self.arms_, key=lambda v: (self.counts_.accuracy(v) if self.counts_.n(v) else -1.0,
                                                  v == self.control_))
        figures = dict(prob_best=pb[best], traffic_candidate=self.traffic().get(self.candidate_, 0.0),
                       accuracy_control=self.counts_.accuracy(self.control_),
                       accuracy_candidate=self.counts_.accuracy(self.candidate_), labelled=n)
        text = (f"P(best) {pb[best]:.3f} for {best}; traffic to {self.candidate_} "
                f"{figures['traffic_candidate']:.0%}" + (" (step limit)" if timeout else ""))
        if best == self.candidate_:
            return self._end(step, "promoted", "promote", text, **figures)
        return self._end(step, "rolled_back", "rollback", text, **figures)

    def summary(self) -> dict:
        out = super().summary()
        if hasattr(self, "arms_"):
            out["posterior"] = {v: list(ab) for v, ab in self.posterior().items()}
        return out


def make_rollout(name: str, **params) -> Rollout:
    """A strategy by its CLI name (one of :data:`STRATEGIES`), with its parameters."""
    classes = {"none": Direct, "shadow": Shadow, "canary": Canary, "ab": ABTest, "bandit": ThompsonBandit}
    if name not in classes:
        raise AttributeValueError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    return classes[name](**params)


__all__ = ["STRATEGIES", "Route", "Outcome", "Decision", "Rollout", "Direct", "Shadow", "Canary", "ABTest",
           "ThompsonBandit", "make_rollout", "two_proportion_z", "mcnemar_exact", "ab_sample_size"]
