"""Optional extra per-coordinate inputs of the compact step (``model.features``), each with its communication cost.

The compact step always sees the agent's gradient g, its previous update Delta, the consensus gap H(W) - W and W
(``surf.models.steps``). These features add what an accelerated or a tracking method uses. Layer l computes the
agent's gradient ``g_l = grad f_i(W_{l-1})`` (the one its step uses) and, with ``mix(z) = S^K z`` (the layer's K
hops, plain S mixing, not the learned taps):

* ``tracking`` — gradient tracking as in DIGing (Nedic, Olshevsky & Shi 2017, eq. 3):
  ``y_l = mix(y_{l-1}) + g_l - g_{l-1}``, ``y_0 = g_0 = 0`` (so ``y_1 = g_1``). Each agent sends y with its model on
  every hop: **one extra vector per message**.
* ``neighbor_gradient`` — the neighbour-averaged gradient ``mix(g_l)``: **one extra vector per message**.
* ``adam`` — Adam's second-moment normalization (Kingma & Ba 2015) across layers:
  ``v_l = b2 v_{l-1} + (1 - b2) g_l * g_l``, feature ``g_l / (sqrt(v_l / (1 - b2^l) + e^2) + e)``, ``b2 = 0.9``,
  ``e = 1e-8``
  (20 layers: Adam's 0.999 would average over all of them). Agent-local: **free**.
* ``catch_up`` — the gradient of an agent that missed layers: ``(l - 1 - t_i) g_l``, ``t_i`` the last layer agent i
  took part in (its state; 0 before layer 1). Zero for an agent that ran layer l - 1; after the step's per-agent
  normalization it is the normalized gradient of an agent coming back from dropped layers, so the learned step can
  make up for the steps it missed (robust meta-training under drops). Agent-local: **free**.

The extra messages travel on their own channels of :meth:`NetworkStep.aggregate`, so dropped agents' stale (or zero)
messages apply to them as to the model; a dropped agent's feature state is frozen with its model. Every feature
enters the MLP, whose output starts at zero: the untrained model is unchanged by them.
"""

from __future__ import annotations

import torch

from surf.graphs.network import NetworkStep

FEATURES: dict[str, str] = {
    "tracking": "DIGing gradient-tracking variable y_l = S^K y_l-1 + g_l - g_l-1 (one extra vector per message)",
    "neighbor_gradient": "neighbour-averaged gradient S^K g_l (one extra vector per message)",
    "adam": "Adam-like second-moment normalized gradient g_l / sqrt(v_l) (agent-local, free)",
    "catch_up": "gradient of an agent back from dropped layers, (layers missed) g_l (agent-local, free)",
}
VECTORS = {"tracking": 1, "neighbor_gradient": 1, "adam": 0, "catch_up": 0}  # extra vectors per message
ADAM_DECAY, ADAM_EPS = 0.9, 1e-8

State = dict[str, torch.Tensor]


def extra_vectors(names: list[str]) -> int:
    """Vectors each message carries besides the model, for these features."""
    return sum(VECTORS[name] for name in names)


def initial_state(names: list[str], w: torch.Tensor) -> State:
    """The features' state before layer 1: y_0 = g_0 = 0 (tracking), v_0 = 0 (adam), t = 0 (catch_up: one per
    agent, shaped (..., 1, 1))."""
    zeros = torch.zeros_like(w)
    state: State = {}
    if "tracking" in names:
        state.update(y=zeros, previous_gradient=zeros)
    if "adam" in names:
        state["second_moment"] = zeros
    if "catch_up" in names:
        state["last_layer"] = zeros[..., :1, :1].clone()
    return state


def mix(step: NetworkStep, z: torch.Tensor, hops: int, name: str) -> torch.Tensor:
    """``S^K z``: K communication rounds of ``z`` on its own channels (``name:k``), as the layer's hops."""
    for k in range(1, hops + 1):
        z = step.aggregate(z, f"{name}:{k}")
    return z


def layer_features(names: list[str], state: State, grad: torch.Tensor, step: NetworkStep | None, hops: int,
                   layer: int) -> tuple[list[torch.Tensor], State]:
    """The features of layer ``layer`` (1-based), in the order of ``names``, and the new state (``step``, the
    layer's network, only for features that communicate: an agent-local feature runs anywhere, e.g. a Flower node)."""
    values, new = {}, dict(state)
    if "tracking" in names:
        new["y"] = mix(step, state["y"], hops, "tracking") + grad - state["previous_gradient"]
        new["previous_gradient"] = grad
        values["tracking"] = new["y"]
    if "neighbor_gradient" in names:
        values["neighbor_gradient"] = mix(step, grad, hops, "neighbor_gradient")
    if "adam" in names:
        new["second_moment"] = ADAM_DECAY * state["second_moment"] + (1.0 - ADAM_DECAY) * grad * grad
        corrected = new["second_moment"] / (1.0 - ADAM_DECAY ** layer)
        values["adam"] = grad / (corrected.add(ADAM_EPS ** 2).sqrt() + ADAM_EPS)  # sqrt'(0) would be inf
    if "catch_up" in names:  # a dropped agent's state is frozen: t stays at the last layer it ran
        values["catch_up"] = (layer - 1 - state["last_layer"]) * grad
        new["last_layer"] = torch.full_like(state["last_layer"], float(layer))
    return [values[name] for name in names], new
