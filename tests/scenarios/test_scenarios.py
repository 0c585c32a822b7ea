"""Stress scenarios: probability 0 is the plain run, keyed drops shared by every method, masks not loops."""

import dataclasses

import pytest
import torch

from surf.baselines.dgd import run_dgd
from surf.config import ModelConfig
from surf.data.batches import initial_weights
from surf.data.tasks import Task
from surf.graphs.dynamic import drop_links, one_peer_shift
from surf.graphs.network import MessageBuffer, Network, StepConditions
from surf.models.udgd import UnrolledDGD
from surf.scenarios.perturbations import Context
from surf.scenarios.scenario import load_scenario, scenario_from_dict, scenario_paths
from surf.utils.errors import ConfigError
from tests.conftest import make_task, ring_shift

NETWORK = ["fig4_async", "fig4_async_zero", "bernoulli", "markov", "churn", "link_loss", "link_failures", "stragglers",
           "bernoulli_link_loss", "feature_noise"]


def _model(layers=4, hops=2):
    torch.manual_seed(0)
    model = UnrolledDGD(ModelConfig(layers=layers, hops=hops, hidden=4, w0_std=0.1, local_gradient="full"), 6, 4, 3)
    for step in model.steps:  # a non-trivial learned correction
        torch.nn.init.normal_(step.mlp[2].weight, std=0.1)
    return model.eval()


def _ctx(task, rep=0):
    return Context(seed=0, task_key=task.key, repeat=rep, num_agents=task.num_agents)


def _run(model, task, shift, bound, rep=0):
    ctx = _ctx(task, rep)
    with torch.no_grad():
        return model(bound.task(ctx, task), shift, 0, bound.schedule(ctx, shift), bound.async_mode)


def _dgd(task, shift, schedule=None, mode="stale"):
    w0 = initial_weights(task, 0, 0.1)
    return run_dgd(task, shift, w0, 8, torch.tensor([0.3, 0.3]), torch.tensor([0.0, 0.5]), None, schedule, mode)


def test_every_bundled_scenario_loads():
    assert set(NETWORK) <= set(scenario_paths())
    for name in scenario_paths():
        assert load_scenario(name).description


def test_a_severity_is_refused_where_the_scenario_never_reads_one():
    """`surf stress RUN --scenario clean --severity 3` ran the clean scenario under the label 3."""
    without = {name for name in scenario_paths() if not load_scenario(name).uses_severity}
    assert without == {"clean", "relabelled", "one_peer_exponential"}
    with pytest.raises(ConfigError, match="^--severity: scenario 'clean' has no severity .* would change nothing"):
        load_scenario("clean").check_severity_given("--severity")
    for name in ("fig4_async", "dirichlet", "time_varying"):  # a parameter, an override, a graph family's params
        load_scenario(name).check_severity_given("--severity")


@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_a_perturbation_parameter_must_be_finite(value):
    """feature_noise at std=inf reported chance accuracy for every method."""
    with pytest.raises(ConfigError, match=r"feature_noise', perturbations\[0\]\.std=(inf|nan) must be a finite"):
        load_scenario("feature_noise").bind(value)


@pytest.mark.parametrize("name", NETWORK)
def test_probability_zero_is_bit_identical_to_the_plain_run(task, shift, name):
    model = _model()
    plain = model(task, shift, 0)
    bound = load_scenario(name).bind(0)
    stressed = _run(model, task, shift, bound)
    assert all(torch.equal(a, b) for a, b in zip(plain.weights, stressed.weights, strict=True))
    assert torch.equal(_dgd(task, shift).accuracy, _dgd(task, shift, None, bound.async_mode).accuracy)


def test_never_dropping_masks_and_zero_delays_are_bit_identical(task, shift):
    """The mask / delay / link path itself (not skipped) changes nothing when nothing is dropped."""
    raw = {"perturbations": [{"kind": "bernoulli", "p": 1e-12}, {"kind": "link_loss", "p": 1e-12},
                             {"kind": "stragglers", "fraction": 0.5, "delay": 0}, {"kind": "markov",
                                                                                 "off_fraction": 1e-12}]}
    bound = scenario_from_dict("tiny", raw).bind(0)
    schedule = bound.schedule(_ctx(task), shift)
    assert schedule is not None and bool(schedule(1).active.all())
    model = _model()
    plain, stressed = model(task, shift, 0), _run(model, task, shift, bound)
    assert all(torch.equal(a, b) for a, b in zip(plain.weights, stressed.weights, strict=True))
    per_round = schedule.per_round(2)
    assert torch.equal(_dgd(task, shift).accuracy, _dgd(task, shift, per_round).accuracy)


def test_same_seed_same_drops_for_every_method(task, shift):
    bound = load_scenario("bernoulli").bind(0.3)
    schedule = bound.schedule(_ctx(task), shift)
    trajectory = _model(layers=4, hops=2)(task, shift, 0, schedule, "stale")
    seen = []
    per_round = schedule.per_round(2)

    def spy(r):
        seen.append(per_round(r).active)
        return per_round(r)

    _dgd(task, shift, spy)
    assert len(seen) == 8
    for layer, mask in enumerate(trajectory.active):  # rounds 2l-1 and 2l of a baseline = layer l
        assert torch.equal(mask, seen[2 * layer]) and torch.equal(mask, seen[2 * layer + 1])
    again = bound.schedule(_ctx(task), shift)  # keyed: recompiling gives the same drops
    assert all(torch.equal(again(t).active, trajectory.active[t - 1]) for t in range(1, 5))
    other = bound.schedule(_ctx(task, rep=1), shift)
    assert not all(torch.equal(other(t).active, trajectory.active[t - 1]) for t in range(1, 5))


def test_higher_severity_only_adds_drops(task, shift):
    scenario = load_scenario("bernoulli")
    low = scenario.bind(0.2).schedule(_ctx(task), shift)
    high = scenario.bind(0.5).schedule(_ctx(task), shift)
    for t in range(1, 6):
        assert bool((~low(t).active <= ~high(t).active).all())  # dropped at 0.2 => dropped at 0.5
    n3 = load_scenario("fig4_async").bind(3).schedule(_ctx(task), shift)(1).active
    assert int((~n3).sum()) == 3


@pytest.mark.parametrize("mode", ["stale", "zero"])
def test_dropped_agent_keeps_its_model_and_records_are_not_corrupted(task, shift, mode):
    bound = dataclasses.replace(load_scenario("bernoulli"), async_mode=mode).bind(0.4)
    trajectory = _run(_model(), task, shift, bound)
    assert any(not bool(a.all()) for a in trajectory.active)
    for layer, active in enumerate(trajectory.active, start=1):
        before, after = trajectory.weights[layer - 1], trajectory.weights[layer]
        assert torch.equal(after[~active], before[~active])  # unchanged, never zeroed in place
        assert not torch.equal(after[active], before[active])


def test_stale_and_zero_semantics():
    active = torch.tensor([True, False, True])
    z1, z2 = torch.arange(3.0).view(3, 1) + 1, torch.arange(3.0).view(3, 1) + 10
    stale, zero = MessageBuffer("stale"), MessageBuffer("zero")
    first = stale.transmitter(torch.ones(3, dtype=torch.bool))(1, z1)
    assert torch.equal(first, z1)
    sent = stale.transmitter(active)(1, z2)
    assert sent.tolist() == [[10.0], [2.0], [12.0]]  # the silent agent repeats what it sent last
    assert zero.transmitter(active)(1, z2).tolist() == [[10.0], [0.0], [12.0]]  # ... or sends zeros
    assert stale.transmitter(active)(2, z2).tolist() == [[10.0], [11.0], [12.0]]  # nothing sent yet on hop 2: setup


def test_stale_and_zero_differ_on_the_model(task, shift):
    model, scenario = _model(), load_scenario("fig4_async")
    stale = _run(model, task, shift, scenario.bind(3))
    zero = _run(model, task, shift, dataclasses.replace(scenario, async_mode="zero").bind(3))
    assert not torch.equal(stale.weights[-1], zero.weights[-1])
    assert all(torch.equal(a, b) for a, b in zip(stale.active, zero.active, strict=True))


def test_stragglers_deliver_old_messages():
    buffer = MessageBuffer("stale")
    delay = torch.tensor([0, 2, 1])
    sent = [buffer.transmitter(None, delay)(1, torch.full((3, 1), float(t))) for t in range(4)]
    assert [s.view(-1).tolist() for s in sent] == [[0, 0, 0], [1, 0, 0], [2, 0, 1], [3, 1, 2]]


def _zero_diagonal_shift(n=12):
    s = ring_shift(n)
    s.fill_diagonal_(0.0)
    return (s / s.sum(1, keepdim=True)).to_sparse_csr()


def test_link_loss_on_all_edges_leaves_the_k0_term(task):
    w = torch.randn(12, 6, 4)
    taps = torch.tensor([0.7, 0.5, -0.3])
    gen = torch.Generator().manual_seed(0)
    lost = drop_links(_zero_diagonal_shift(), 1.0, gen, symmetric=False, renormalize=False)
    out = Network(_zero_diagonal_shift()).step(1).filter(w, taps)
    network = Network(_zero_diagonal_shift(), lambda t: StepConditions(shift=lost))
    assert torch.equal(network.step(1).filter(w, taps), taps[0] * w)
    assert not torch.allclose(out, taps[0] * w)
    # with self-loops (a self-loop is not a message): every agent keeps only its own model, sum_k h_k s_ii^k w_i
    with_loops = ring_shift()
    cut = drop_links(with_loops.to_sparse_csr(), 1.0, gen, symmetric=True, renormalize=False)
    diag = with_loops.diagonal().view(-1, 1, 1)
    expected = taps[0] * w + taps[1] * diag * w + taps[2] * diag**2 * w
    assert torch.allclose(Network(cut).step(1).filter(w, taps), expected)
    # renormalize: the lost weight moves onto the self-loop (row-stochastic S -> I)
    kept = drop_links(with_loops.to_sparse_csr(), 1.0, gen, symmetric=False, renormalize=True)
    assert torch.allclose(kept.to_dense(), torch.eye(12))


def test_symmetric_link_failures_cut_both_directions():
    s = ring_shift(30).to_sparse_csr()
    cut = drop_links(s, 0.5, torch.Generator().manual_seed(1), symmetric=True, renormalize=False).to_dense()
    assert torch.equal(cut > 0, (cut > 0).T)
    assert (cut > 0).sum() < (s.to_dense() > 0).sum()
    loss = drop_links(s, 0.5, torch.Generator().manual_seed(1), symmetric=False, renormalize=False).to_dense()
    assert not torch.equal(loss > 0, (loss > 0).T)


def test_markov_churn_and_one_peer():
    task = make_task(n=1000, m=2, m_test=1)
    markov = load_scenario("markov").bind(0.2).schedule(_ctx(task), torch.eye(1000).to_sparse_csr())
    down = torch.stack([~markov(t).active for t in range(1, 41)]).float()
    assert abs(down.mean().item() - 0.2) < 0.03
    spells = (down[1:] * down[:-1]).sum() / down[:-1].sum()  # P(down at t+1 | down at t) = 1 - 1/3
    assert abs(spells.item() - 2 / 3) < 0.05
    churn = load_scenario("churn").bind(0.1).schedule(_ctx(task), torch.eye(1000).to_sparse_csr())
    assert bool(churn(3).active.all()) and int((~churn(4).active).sum()) == 100
    assert torch.equal(churn(4).active, churn(9).active)
    for t in (1, 2, 5):
        s = one_peer_shift(8, t).to_dense()
        assert torch.allclose(s.sum(1), torch.ones(8)) and int((s > 0).sum()) == 16
    assert one_peer_shift(8, 2).to_dense()[0, 2] == 0.5 and one_peer_shift(8, 4).to_dense()[0, 1] == 0.5


def test_time_varying_graph_changes_per_step_and_is_keyed(task, shift):
    bound = load_scenario("time_varying").bind(0.3)
    schedule = bound.schedule(_ctx(task), shift)
    first, second = schedule(1).shift.to_dense(), schedule(2).shift.to_dense()
    assert not torch.equal(first, second)
    assert torch.equal(bound.schedule(_ctx(task), shift)(1).shift.to_dense(), first)


def test_feature_noise_and_relabel_change_the_task_only(task):
    fields = ("key", "x_train", "y_train", "x_test", "y_test", "num_classes", "x_pool", "y_pool")
    task = Task(**{name: getattr(task, name) for name in fields})
    noisy = load_scenario("feature_noise").bind(0.5).task(_ctx(task), task)
    assert not torch.equal(noisy.x_train, task.x_train) and torch.equal(noisy.x_train[..., -1], task.x_train[..., -1])
    assert torch.equal(noisy.y_train, task.y_train) and torch.equal(noisy.y_test, task.y_test)
    relabelled = load_scenario("relabelled").bind(0).task(_ctx(task), task)
    assert torch.equal(relabelled.x_train, task.x_train)
    assert torch.equal(relabelled.y_train, relabelled.permutation[task.y_train])
    assert not torch.equal(relabelled.permutation, torch.arange(task.num_classes))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"perturbations": [{"kind": "bernouli", "p": 0.1}]}, "did you mean 'bernoulli'"),
        ({"perturbations": [{"kind": "bernoulli", "q": 0.1}]}, "has no parameter 'q'"),
        ({"perturbations": [{"kind": "bernoulli", "p": 2.0}]}, "must be in [0, 1]"),
        ({"perturbations": [{"kind": "async", "n": "many"}]}, "expected int"),
        ({"async_mode": "late"}, "async_mode"),
    ],
)
def test_bad_scenarios_are_one_line_errors(raw, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        scenario_from_dict("bad", raw).bind(0)


def test_unknown_scenario_name_suggests(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'bernoulli'"):
        load_scenario("bernouli")
    path = tmp_path / "x.yaml"
    path.write_text("severities: [0]\nperturbation: []\n")
    with pytest.raises(ConfigError, match="unknown keys"):
        load_scenario(str(path))


def test_class_split_for_unseen_classes():
    from surf import config as config_mod
    from surf.data.tasks import TaskSampler

    base = config_mod.from_dict({"num_agents": 6, "data": {"train_per_agent": 8, "test_per_agent": 4}})
    seen = TaskSampler(load_scenario("unseen_classes").bind("0,1,2,3,4").config(base)).task("train", 0)
    unseen = TaskSampler(load_scenario("unseen_classes").bind("5,6,7,8,9").config(base)).task("test", 0)
    assert set(seen.y_train.unique().tolist()) <= {0, 1, 2, 3, 4}
    assert set(unseen.y_test.unique().tolist()) | set(unseen.y_train.unique().tolist()) <= {5, 6, 7, 8, 9}
    with pytest.raises(ConfigError, match="data.classes"):
        TaskSampler(config_mod.from_dict({"data": {"classes": [3, 12]}}))


@pytest.mark.parametrize("name", sorted(scenario_paths()))
def test_every_bundled_severity_compiles(name):
    """Each bundled scenario builds its network at every severity (e.g. sparse time-varying graphs may be
    disconnected)."""
    scenario, task = load_scenario(name), make_task(n=100, m=2, m_test=1)
    for severity in scenario.severities:
        schedule = scenario.bind(severity).schedule(_ctx(task), torch.eye(100).to_sparse_csr())
        if schedule is not None:
            assert schedule(1).shift is None or schedule(1).shift.shape == (100, 100)
            schedule(2)
