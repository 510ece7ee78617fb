"""Federated averaging: the one-client case is SGD, IID digits learn, non-IID learns slower, DP and bytes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tinyml_lab.data import load_digits
from tinyml_lab.errors import AttributeValueError, DataError
from tinyml_lab.graph import GraphBuilder
from tinyml_lab.mlops.accountant import epsilon as dp_epsilon
from tinyml_lab.mlops.federated import (Client, FedAvg, label_skew, make_clients, partition_dirichlet,
                                        partition_iid)
from tinyml_lab.train import SGD, fit


def mlp(seed: int = 0):
    b = GraphBuilder("mlp", seed=seed)
    x = b.input((8, 8, 1))
    h = b.dense(b.flatten(x), 32, activation="relu", name="fc1")
    return b.build(b.softmax(b.dense(h, 10, name="fc2"), name="sm"))


@pytest.fixture(scope="module")
def digits():
    return load_digits(8)


def weights(g):
    return {n: t.data.copy() for n, t in g.tensors.items() if t.is_const}


def test_one_client_one_local_step_is_a_centralized_sgd_step(digits):
    x, y = digits.x_train[:200], digits.y_train[:200]
    g_fed, g_sgd = mlp(), mlp()
    FedAvg(rounds=1, local_epochs=1, batch_size=None, lr=0.1).fit(g_fed, [Client(0, x, y)])
    fit(g_sgd, x, y, epochs=1, batch_size=len(x), optimizer=SGD(lr=0.1), quiet=True)
    for n, w in weights(g_sgd).items():
        np.testing.assert_allclose(g_fed.tensors[n].data, w, rtol=1e-5, atol=1e-7)
    assert any(not np.array_equal(w, v) for w, v in zip(weights(mlp()).values(), weights(g_fed).values()))


def test_server_average_is_weighted_by_client_size(digits):
    """Two clients, one full-batch step each: the new weights are (n1 w1 + n2 w2) / (n1 + n2)."""
    x, y = digits.x_train, digits.y_train
    a, b = Client(0, x[:50], y[:50]), Client(1, x[50:200], y[50:200])
    g = mlp()
    FedAvg(rounds=1, local_epochs=1, batch_size=None, lr=0.2).fit(g, [a, b])
    local = []
    for c in (a, b):
        h = mlp()
        fit(h, c.x, c.y, epochs=1, batch_size=c.size, optimizer=SGD(lr=0.2), quiet=True)
        local.append(weights(h))
    for n in local[0]:
        expect = (50 * local[0][n].astype(np.float64) + 150 * local[1][n]) / 200
        np.testing.assert_allclose(g.tensors[n].data, expect, rtol=1e-5, atol=1e-7)


def test_partitions(digits):
    y = digits.y_train
    iid = partition_iid(y, 10, seed=0)
    assert sorted(np.concatenate(iid).tolist()) == list(range(len(y)))
    assert max(map(len, iid)) - min(map(len, iid)) <= 1
    non = partition_dirichlet(y, 10, alpha=0.1, seed=0)
    assert sorted(np.concatenate(non).tolist()) == list(range(len(y)))
    assert min(map(len, non)) >= 1
    # few classes per client: far from the global label mix, unlike the IID split
    assert label_skew(y, non) > 0.5 > 0.2 > label_skew(y, iid)
    assert label_skew(y, partition_dirichlet(y, 10, alpha=100.0, seed=0)) < 0.2
    np.testing.assert_array_equal(np.concatenate(non), np.concatenate(partition_dirichlet(y, 10, 0.1, seed=0)))


def test_iid_learns_and_non_iid_learns_slower(digits):
    """Seeded: 10 clients, 4 local epochs, 6 rounds. IID accuracy climbs; the Dirichlet(0.1) split, whose clients
    see few classes each and drift apart during local training, has a lower mean accuracy over the rounds
    (measured 0.72 against 0.60 for seed 0; 0.72 against 0.44 for seed 1)."""
    curves = {}
    for name, parts in (("iid", partition_iid(digits.y_train, 10, 0)),
                        ("non-iid", partition_dirichlet(digits.y_train, 10, 0.1, 0))):
        g = mlp(0)
        f = FedAvg(rounds=6, local_epochs=4, batch_size=16, lr=0.05, seed=0).fit(
            g, make_clients(digits.x_train, digits.y_train, parts), (digits.x_test, digits.y_test))
        curves[name] = np.array(f.history_["val_accuracy"])
    iid, non = curves["iid"], curves["non-iid"]
    assert iid[-1] > iid[0] + 0.2 and iid[-1] > 0.8
    assert iid.mean() > non.mean() + 0.05


def test_bytes_and_seeding(digits):
    parts = partition_iid(digits.y_train, 6, 0)
    clients = make_clients(digits.x_train, digits.y_train, parts)
    runs = []
    for seed in (3, 3, 4):
        g = mlp()
        f = FedAvg(rounds=2, local_epochs=1, batch_size=32, lr=0.05, client_fraction=0.5, seed=seed).fit(g, clients)
        runs.append((f, weights(g)))
    f = runs[0][0]
    params = (64 * 32 + 32 + 32 * 10 + 10) * 4  # float32 weights and biases
    assert f.bytes_per_round_ == 2 * params
    assert f.history_["clients"] == [3, 3]
    assert f.history_["bytes_up"] == [3 * params] * 2 and f.history_["bytes_total"] == [6 * params, 12 * params]
    for n in runs[0][1]:
        np.testing.assert_array_equal(runs[0][1][n], runs[1][1][n])
    assert any(not np.array_equal(runs[0][1][n], runs[2][1][n]) for n in runs[0][1])


def test_client_level_dp(digits):
    parts = partition_iid(digits.y_train, 20, 0)
    clients = make_clients(digits.x_train, digits.y_train, parts)
    g = mlp()
    f = FedAvg(rounds=3, local_epochs=1, batch_size=16, lr=0.05, dp_clip=0.5, dp_noise=1.0, client_rate=0.25,
               seed=0).fit(g, clients)
    assert f.history_["epsilon"] == pytest.approx([dp_epsilon(0.25, 1.0, r, 1e-5).epsilon for r in (1, 2, 3)])
    assert 0 < np.mean(f.history_["clients"]) < 20
    # without noise but clipped to a tiny norm, the global model barely moves: each update is clipped to S
    g2, start = mlp(), weights(mlp())
    f2 = FedAvg(rounds=1, local_epochs=1, batch_size=16, lr=0.05, dp_clip=1e-3, client_rate=1.0).fit(g2, clients)
    moved = math.sqrt(sum(float(np.square(g2.tensors[n].data.astype(np.float64) - w).sum())
                          for n, w in start.items()))
    assert moved <= 1e-3 * (1 + 1e-4)
    assert math.isinf(f2.history_["epsilon"][0])


@pytest.mark.parametrize("kwargs, words", [
    (dict(rounds=0), "rounds"), (dict(client_fraction=0.0), "client_fraction"), (dict(dp_clip=-1.0), "dp_clip"),
    (dict(dp_noise=1.0), "dp_clip"), (dict(client_rate=2.0), "sampling rate"), (dict(lr=0.0), "lr"),
    (dict(batch_norm="none"), "batch_norm"),
])
def test_bad_parameters(kwargs, words):
    with pytest.raises(AttributeValueError, match=words):
        FedAvg(**kwargs)


def test_bad_partitions(digits):
    with pytest.raises(DataError, match="clients"):
        partition_iid([0, 1], 3)
    with pytest.raises(AttributeValueError, match="alpha"):
        partition_dirichlet(digits.y_train, 5, alpha=0.0)
    with pytest.raises(DataError, match="Client"):
        FedAvg().fit(mlp(), [])
