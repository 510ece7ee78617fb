"""Optimizers: SGD (with momentum) and Adam, with Quantization-Aware Scaling as an option.

An optimizer is built with its hyperparameters (scikit-learn style: set in
``__init__``, learned state in attributes ending in ``_``) and keeps one
state per parameter name. Two verbs:

* ``updates(params, grads, scales=None)`` returns the change ``delta`` of every
  parameter and advances the state;
* ``step(params, grads, scales=None)`` applies it in place, ``p += delta``.

The int8 trainer (:mod:`tinyml_lab.train.quantized`) calls ``updates`` and
rounds ``delta`` into the integer weights itself.

**Quantization-Aware Scaling** (QAS; Lin et al., "On-Device Training Under
256KB Memory", NeurIPS 2022). When the stored parameter is the integer
``W_bar = W / s`` (``s`` the quantization scale, per output channel), its
gradient is ``G_Wbar = s G_W``, so ``||W_bar|| / ||G_Wbar|| = s^-2 ||W|| / ||G_W||``:
with ``s`` around 1e-2 the gradient is some 10^4 times too large relative to
the weight compared with float training, and it differs from layer to layer
with ``s``. QAS multiplies each gradient by ``s^-2`` before the optimizer sees
it (for the int32 bias, ``s = s_x s_W``, so by ``(s_x s_W)^-2``). With
``qas=True`` and the scales passed to ``updates``/``step``,
``G~ = G / s^2``; an SGD step is then ``-lr G_W / s``, the float step written
in units of ``s``.
"""

from __future__ import annotations

import copy
import math
import numbers
from typing import Mapping

import numpy as np

from ..errors import AttributeValueError, TinyMLError

Arrays = Mapping[str, np.ndarray]


def _number(value: object, what: str, lo: float, hi: float = math.inf, lo_open: bool = False,
            hi_open: bool = True) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))
    if ok:
        v = float(value)
        ok = (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
    if not ok:
        lb = "(" if lo_open else "["
        rb = ")" if hi_open else "]"
        raise AttributeValueError(f"{what} must be a number in {lb}{lo:g}, {hi:g}{rb}, got {value!r}")
    return float(value)


class Optimizer:
    """Base class: learning rate, L2 weight decay, QAS, and per-parameter state.

    Attributes:
        state_: ``{parameter name: {buffer name: array}}``.
        steps_: how many updates have been taken.
    """

    def __init__(self, lr: float, weight_decay: float = 0.0, qas: bool = False):
        self.lr = _number(lr, "lr", 0.0, lo_open=True)
        self.weight_decay = _number(weight_decay, "weight_decay", 0.0)
        if not isinstance(qas, bool):
            raise AttributeValueError(f"qas must be True or False, got {qas!r}")
        self.qas = qas
        self.state_: dict[str, dict[str, np.ndarray]] = {}
        self.steps_ = 0

    # ------------------------------------------------------------------ public verbs
    def updates(self, params: Arrays, grads: Arrays, scales: Mapping[str, object] | None = None
                ) -> dict[str, np.ndarray]:
        """The change of every parameter named in ``grads``; advances the state.

        ``scales`` maps a parameter name to the quantization scale of its
        stored integers (broadcastable to it); QAS needs them.
        """
        if self.qas and scales is None:
            raise TinyMLError(
                "qas=True rescales gradients by the weights' quantization scales, and none were given; "
                "QAS is for int8 training (tinyml_lab.train.fit_quantized), use qas=False for float training"
            )
        out = {}
        for name, g in grads.items():
            if name not in params:
                raise AttributeValueError(f"a gradient for {name!r} but no such parameter")
            out[name] = self.update_one(name, params[name], g, None if scales is None else scales[name])
        self.steps_ += 1
        return out

    def update_one(self, name: str, p: np.ndarray, g: np.ndarray, scale: object = None) -> np.ndarray:
        """The change of one parameter, advancing its state but not ``steps_``: what a compiled step
        calls as soon as that parameter's gradient exists (:mod:`tinyml_lab.train.compiler`)."""
        if self.qas and scale is None:
            raise TinyMLError(f"qas=True needs the quantization scale of {name!r}")
        if g.shape != p.shape:
            raise AttributeValueError(f"gradient of {name!r} has shape {g.shape}, the parameter {p.shape}")
        g = np.asarray(g, dtype=np.float64)
        if self.qas:
            s = np.asarray(scale, dtype=np.float64)
            g = g / (s * s)
        if self.weight_decay:
            g = g + self.weight_decay * np.asarray(p, dtype=np.float64)
        return self._delta(name, g).astype(np.float32)

    @property
    def state_buffers(self) -> int:
        """Buffers of the parameter's size this optimizer keeps per parameter (0 for plain SGD,
        1 for momentum, 2 for Adam), for memory accounting."""
        return 0

    def step(self, params: dict[str, np.ndarray], grads: Arrays, scales: Mapping[str, object] | None = None) -> None:
        """``p += delta`` in place for every parameter named in ``grads``."""
        for name, d in self.updates(params, grads, scales).items():
            params[name] += d.astype(params[name].dtype)

    def reset(self) -> "Optimizer":
        """Forget every state (momentum, moments); keep the hyperparameters."""
        self.state_ = {}
        self.steps_ = 0
        return self

    def state_dict(self) -> dict:
        """A deep copy of the state, for :meth:`load_state_dict`."""
        return {"state": copy.deepcopy(self.state_), "steps": self.steps_}

    def load_state_dict(self, state: dict) -> None:
        self.state_ = copy.deepcopy(state["state"])
        self.steps_ = int(state["steps"])

    def get_params(self) -> dict:
        return {k: v for k, v in vars(self).items() if not k.endswith("_")}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())})"

    def _delta(self, name: str, g: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class SGD(Optimizer):
    """Stochastic gradient descent, with heavy-ball momentum when ``momentum > 0``.

    ``v = momentum v + g``; ``delta = -lr v`` (Nesterov: ``-lr (g + momentum v)``),
    the convention of Sutskever et al., "On the importance of initialization
    and momentum in deep learning", ICML 2013. ``momentum=0`` is plain SGD,
    ``delta = -lr g``, and keeps no state.
    """

    def __init__(self, lr: float = 0.01, momentum: float = 0.0, weight_decay: float = 0.0,
                 nesterov: bool = False, qas: bool = False):
        super().__init__(lr, weight_decay, qas)
        self.momentum = _number(momentum, "momentum", 0.0, 1.0)
        if nesterov and self.momentum == 0.0:
            raise AttributeValueError("nesterov=True needs momentum > 0")
        self.nesterov = bool(nesterov)

    @property
    def state_buffers(self) -> int:
        return 0 if self.momentum == 0.0 else 1

    def _delta(self, name: str, g: np.ndarray) -> np.ndarray:
        if self.momentum == 0.0:
            return -self.lr * g
        st = self.state_.setdefault(name, {})
        v = st.get("momentum")
        v = g.copy() if v is None else self.momentum * v + g
        st["momentum"] = v
        return -self.lr * (g + self.momentum * v if self.nesterov else v)


class Adam(Optimizer):
    """Adam (Kingma and Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015).

    ``m = b1 m + (1 - b1) g``, ``v = b2 v + (1 - b2) g^2``,
    ``delta = -lr m_hat / (sqrt(v_hat) + eps)`` with the bias corrections
    ``m_hat = m / (1 - b1^t)``, ``v_hat = v / (1 - b2^t)``, ``t`` counted per
    parameter. The step is nearly independent of the gradient's scale, so Adam
    is less hurt by the ``s^-2`` mismatch that QAS corrects; its step is
    about ``lr`` in the units of the stored parameter, so an int8 weight
    needs an ``lr`` on the scale of one integer step.
    """

    def __init__(self, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                 weight_decay: float = 0.0, qas: bool = False):
        super().__init__(lr, weight_decay, qas)
        self.beta1 = _number(beta1, "beta1", 0.0, 1.0)
        self.beta2 = _number(beta2, "beta2", 0.0, 1.0)
        self.eps = _number(eps, "eps", 0.0, lo_open=True)

    @property
    def state_buffers(self) -> int:
        return 2

    def _delta(self, name: str, g: np.ndarray) -> np.ndarray:
        st = self.state_.setdefault(name, {"m": np.zeros_like(g), "v": np.zeros_like(g), "t": np.zeros(())})
        st["t"] = st["t"] + 1
        t = float(st["t"])
        st["m"] = self.beta1 * st["m"] + (1.0 - self.beta1) * g
        st["v"] = self.beta2 * st["v"] + (1.0 - self.beta2) * g * g
        m_hat = st["m"] / (1.0 - self.beta1 ** t)
        v_hat = st["v"] / (1.0 - self.beta2 ** t)
        return -self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


OPTIMIZERS = {"sgd": SGD, "adam": Adam}


def make_optimizer(name: str, **params: object) -> Optimizer:
    """``make_optimizer("sgd", lr=0.05, momentum=0.9)``: an optimizer by name."""
    try:
        cls = OPTIMIZERS[str(name).lower()]
    except KeyError:
        raise AttributeValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}") from None
    return cls(**params)  # type: ignore[arg-type]


def cosine_decay(optimizer: Optimizer, epochs: int, final_fraction: float = 0.0):
    """A ``fit`` callback that anneals the learning rate along half a cosine (Loshchilov and Hutter,
    "SGDR", ICLR 2017): after epoch ``e`` of ``E``,
    ``lr = lr_0 (f + (1 - f) (1 + cos(pi e / E)) / 2)``, ``f = final_fraction``."""
    if isinstance(epochs, bool) or not isinstance(epochs, numbers.Integral) or epochs < 1:
        raise AttributeValueError(f"epochs must be an int >= 1, got {epochs!r}")
    f = _number(final_fraction, "final_fraction", 0.0, 1.0, hi_open=False)
    lr0 = optimizer.lr

    def callback(row: dict) -> None:
        e = min(int(row["epoch"]), int(epochs))
        optimizer.lr = max(lr0 * (f + (1.0 - f) * 0.5 * (1.0 + math.cos(math.pi * e / epochs))), 1e-12)

    return callback
