"""Hidden checks of Lab 03: dropout and model ensembles.

Each check compares the student's code with an independent oracle (numpy or
torch computed here, torch.nn.Dropout, values worked out by hand) and, where
it helps, with the reference, on inputs made from its seeded ``rng``.
Random masks are checked by their statistics with bounds of 6 standard
deviations (a correct answer fails one of them with probability < 1e-8), and
exactly where the documented seed fixes them:
``np.random.default_rng(seed).random(shape) < keep_prob``.
"""

import numpy as np
import pytest
import torch

from autograder.checks.isolation import call_both
from autograder.sandbox.modules import build_module, lend, module_spec
from labkit.checks import (
    CheckFailure,
    assert_close,
    assert_raises,
    assert_rel_error,
    assert_shape,
    eval_numerical_gradient_array,
)


def oracle_mask(seed, shape, keep_prob):
    """The documented mask: kept where default_rng(seed).random(shape) < keep_prob, scaled."""
    return (np.random.default_rng(seed).random(shape) < keep_prob) / keep_prob


def check_fraction(what, kept, n, keep_prob, sigmas=6.0):
    """Fail unless ``kept`` of ``n`` Bernoulli(keep_prob) draws is a plausible count."""
    std = np.sqrt(n * keep_prob * (1 - keep_prob))
    if abs(kept - n * keep_prob) > sigmas * std + 1:
        raise CheckFailure(
            f"{what}: {kept} of {n} units kept ({kept / n:.4f}), expected a fraction of about "
            f"keep_prob = {keep_prob} (keep_prob is the probability of KEEPING a unit; torch's p "
            f"is the probability of dropping it)."
        )


def as_numpy(name, a):
    if a is None:
        raise CheckFailure(f"{name} is None: did you forget a `return`?")
    return np.asarray(a)


# --- dropout_forward -----------------------------------------------------------------------


@pytest.mark.points(3)
@pytest.mark.parametrize("keep_prob", [0.3, 0.75])
def test_dropout_forward_exact_for_seed(student, reference, rng, keep_prob):
    """dropout_forward in train mode with a seed: the documented mask, scaled by 1 / keep_prob."""
    x = rng.standard_normal((6, 5, 4))
    seed = int(rng.integers(1_000_000))
    param = {"keep_prob": keep_prob, "mode": "train", "seed": seed}
    (out, _), (ours, _) = call_both("dropout_forward", student.dropout_forward,
                                    reference.dropout_forward, x, dict(param),
                                    names=("x", "dropout_param"))
    expected = x * oracle_mask(seed, x.shape, keep_prob)
    assert_close(f"dropout_forward(x, {param})[0] (mask: np.random.default_rng(seed)"
                 f".random(x.shape) < keep_prob, kept units times 1 / keep_prob)", out, expected)
    assert_close("dropout_forward(x, ...)[0] vs the reference", out, ours)


@pytest.mark.points(1)
def test_dropout_forward_seed_fixes_the_mask(student, rng):
    """The same seed gives the same output; another seed, another mask."""
    x = rng.standard_normal((20, 30)) + 3.0
    out1, _ = student.dropout_forward(x, {"keep_prob": 0.5, "mode": "train", "seed": 7})
    out2, _ = student.dropout_forward(x, {"keep_prob": 0.5, "mode": "train", "seed": 7})
    out3, _ = student.dropout_forward(x, {"keep_prob": 0.5, "mode": "train", "seed": 8})
    assert_close("two calls of dropout_forward with seed 7", out2, out1)
    if np.array_equal(np.asarray(out1), np.asarray(out3)):
        raise CheckFailure("dropout_forward gives the same mask for seeds 7 and 8: draw it with "
                           "np.random.default_rng(dropout_param.get('seed')).")


@pytest.mark.points(2)
@pytest.mark.parametrize("keep_prob", [0.2, 0.5, 0.9])
def test_dropout_forward_mask_statistics(student, keep_prob):
    """Without a seed: about keep_prob of the units are kept, each scaled by 1 / keep_prob."""
    x = np.ones((400, 500))
    out = as_numpy("dropout_forward(x, ...)[0]",
                   student.dropout_forward(x, {"keep_prob": keep_prob, "mode": "train"})[0])
    assert_shape("dropout_forward(x, ...)[0]", out, x.shape)
    kept = out != 0
    check_fraction(f"dropout_forward(ones, keep_prob={keep_prob}, mode='train')",
                   int(kept.sum()), x.size, keep_prob)
    assert_close(f"the kept units of dropout_forward(ones, keep_prob={keep_prob}) (inverted "
                 f"dropout scales them by 1 / keep_prob = {1 / keep_prob:.4g})",
                 out[kept], np.full(int(kept.sum()), 1 / keep_prob))
    out2 = np.asarray(student.dropout_forward(x, {"keep_prob": keep_prob, "mode": "train"})[0])
    if np.array_equal(out, out2):
        raise CheckFailure("two calls of dropout_forward without a seed gave the same mask: "
                           "without a seed the mask must be new at each call.")


@pytest.mark.points(2)
def test_dropout_forward_preserves_expectation(student, rng):
    """The mean output over many masks is x (expected value preserved)."""
    keep_prob, trials = 0.4, 3000
    x = rng.uniform(0.5, 2.0, size=(4, 5)) * rng.choice([-1, 1], size=(4, 5))
    big = np.broadcast_to(x, (trials, 4, 5)).copy()
    out = as_numpy("dropout_forward(x, ...)[0]",
                   student.dropout_forward(big, {"keep_prob": keep_prob, "mode": "train"})[0])
    mean = out.mean(axis=0)
    std = np.abs(x) * np.sqrt((1 - keep_prob) / keep_prob / trials)
    worst = np.max(np.abs(mean - x) / std)
    if worst > 6:
        raise CheckFailure(
            f"the mean of dropout_forward over {trials} masks should be x (inverted dropout keeps "
            f"the expected value); it is off by {worst:.1f} standard deviations "
            f"(e.g. mean {mean.ravel()[0]:.4f} for x = {x.ravel()[0]:.4f}, keep_prob={keep_prob})."
        )


@pytest.mark.points(2)
@pytest.mark.parametrize("seed", [None, 3])
def test_dropout_forward_test_mode_is_identity(student, rng, seed):
    """In test mode dropout_forward returns x unchanged (no mask, no scaling)."""
    x = rng.standard_normal((10, 12))
    param = {"keep_prob": 0.5, "mode": "test", "seed": seed}
    out, _ = student.dropout_forward(x, param)
    assert_close(f"dropout_forward(x, {param})[0] (test mode: the identity)", out, x)


@pytest.mark.points(1)
def test_dropout_forward_keeps_input(student, rng):
    """dropout_forward does not modify its input."""
    x = rng.standard_normal((8, 9))
    before = x.copy()
    student.dropout_forward(x, {"keep_prob": 0.5, "mode": "train", "seed": 1})
    assert_close("x after dropout_forward(x, ...) (it must not be modified)", x, before)


# --- dropout_backward ----------------------------------------------------------------------


@pytest.mark.points(3)
@pytest.mark.parametrize("mode", ["train", "test"])
def test_dropout_backward_numeric_gradient(student, rng, mode):
    """dropout_backward against a numeric gradient, the mask fixed by a seed."""
    x = rng.standard_normal((5, 7)) + 5.0
    dout = rng.standard_normal((5, 7))
    param = {"keep_prob": 0.6, "mode": mode, "seed": int(rng.integers(1_000_000))}
    _, cache = student.dropout_forward(x, dict(param))
    dx = student.dropout_backward(dout, cache)
    dx_num = eval_numerical_gradient_array(
        lambda v: student.dropout_forward(v, dict(param))[0], x.copy(), dout)
    assert_rel_error(f"dx of dropout_backward in {mode} mode vs the numeric gradient",
                     dx, dx_num, max_error=1e-8)


@pytest.mark.points(3)
def test_dropout_backward_reuses_the_mask(student, rng):
    """Without a seed, the backward pass uses the forward pass's mask: dx = dout * out / x."""
    keep_prob = 0.5
    x = rng.uniform(1.0, 2.0, size=(30, 40))
    dout = rng.standard_normal((30, 40))
    out, cache = student.dropout_forward(x, {"keep_prob": keep_prob, "mode": "train"})
    student.dropout_forward(x, {"keep_prob": keep_prob, "mode": "train"})  # another mask
    dx = student.dropout_backward(dout, cache)
    expected = dout * np.asarray(out) / x
    assert_close("dropout_backward(dout, cache): dx must be dout times the forward pass's "
                 "(scaled) mask, the one kept in the cache; do not draw a new mask",
                 dx, expected)


# --- Dropout (torch module) ----------------------------------------------------------------


@pytest.mark.points(3)
@pytest.mark.parametrize("keep_prob", [0.25, 0.5, 0.9])
def test_dropout_module_matches_torch_in_distribution(student, seed, keep_prob):
    """Dropout(keep_prob) vs torch.nn.Dropout(p=1 - keep_prob): kept fraction and scale."""
    torch.manual_seed(seed)
    x = torch.ones(300, 700)
    ours = student.Dropout(keep_prob)
    ours.train()
    out = ours(x)
    if not isinstance(out, torch.Tensor):
        raise CheckFailure(f"Dropout must return a torch tensor, got {type(out).__name__}.")
    assert_shape(f"Dropout({keep_prob})(x)", out, x.shape)
    theirs = torch.nn.Dropout(p=1 - keep_prob).train()(x)
    kept, kept_torch = out != 0, theirs != 0
    check_fraction(f"Dropout({keep_prob}) in train mode", int(kept.sum()), x.numel(), keep_prob)
    check_fraction(f"torch.nn.Dropout(p={1 - keep_prob:g})", int(kept_torch.sum()), x.numel(),
                   keep_prob)  # the oracle itself: torch's p is the probability of DROPPING
    assert_close(f"the kept values of Dropout({keep_prob})(ones) vs those of "
                 f"torch.nn.Dropout(p={1 - keep_prob:g})(ones)",
                 out[kept].detach().unique(), theirs[kept_torch].unique(), rtol=1e-6)


@pytest.mark.points(1)
def test_dropout_module_default_keep_prob(student, seed):
    """Dropout() without an argument keeps each unit with probability 0.5, scaled by 2."""
    torch.manual_seed(seed)
    x = torch.ones(300, 700)
    m = student.Dropout()
    m.train()
    out = m(x)
    check_fraction("Dropout() (the default keep_prob is 0.5) in train mode",
                   int((out != 0).sum()), x.numel(), 0.5)
    assert_close("the kept values of Dropout()(ones) (scaled by 1 / 0.5)",
                 out[out != 0].detach().unique(), torch.tensor([2.0]))


@pytest.mark.points(2)
@pytest.mark.parametrize("keep_prob", [0.3, 0.8])
def test_dropout_module_eval_is_identity(student, rng, keep_prob):
    """In eval mode, Dropout(keep_prob) returns its input, like torch.nn.Dropout."""
    x = torch.from_numpy(rng.standard_normal((16, 8, 3)).astype(np.float32))
    ours = student.Dropout(keep_prob)
    ours.eval()
    torch_out = torch.nn.Dropout(p=1 - keep_prob).eval()(x)
    assert_close(f"Dropout({keep_prob}) in eval mode (model.eval(): the identity)",
                 ours(x), torch_out, rtol=0, atol=0)


@pytest.mark.points(2)
def test_dropout_module_fresh_independent_masks(student, seed):
    """Each call and each example gets its own mask; gradients flow through the kept units."""
    torch.manual_seed(seed)
    ours = student.Dropout(0.5)
    ours.train()
    x = torch.full((64, 50), 2.0, requires_grad=True)
    out = ours(x)
    kept = (out != 0).detach()
    if all(torch.equal(kept[0], kept[i]) for i in range(1, kept.shape[0])):
        raise CheckFailure("Dropout used the same mask for every example of the batch: draw a "
                           "mask of the shape of x (torch.rand_like(x)).")
    if torch.equal(kept, (ours(x) != 0).detach()):
        raise CheckFailure("two calls of Dropout in train mode gave the same mask: draw a new one "
                           "at every forward pass.")
    out.sum().backward()
    assert_close("x.grad after Dropout(0.5)(x).sum().backward() (2 where kept, 0 where dropped)",
                 x.grad, kept.float() * 2.0)


@pytest.mark.points(1)
def test_dropout_module_torch_seed(student):
    """Dropout's mask comes from torch's generator: torch.manual_seed makes it reproducible."""
    ours = student.Dropout(0.5)
    ours.train()
    x = torch.ones(10, 20)
    torch.manual_seed(123)
    a = ours(x)
    torch.manual_seed(123)
    b = ours(x)
    assert_close("Dropout(0.5)(x) twice after torch.manual_seed(123)", b, a)


@pytest.mark.points(1)
def test_dropout_module_keep_prob_one_and_bad_values(student):
    """Dropout(1.0) keeps everything; keep_prob outside (0, 1] raises ValueError."""
    x = torch.arange(12.0).reshape(3, 4)
    m = student.Dropout(1.0)
    m.train()
    assert_close("Dropout(1.0)(x) in train mode (keep everything)", m(x), x)
    for bad in (0.0, -0.2, 1.5):
        assert_raises(f"Dropout({bad})", ValueError, student.Dropout, bad)


# --- DropConnect ---------------------------------------------------------------------------


@pytest.mark.points(2)
def test_dropconnect_forward_exact_for_seed(student, rng):
    """dropconnect_forward: x @ (w * mask) + b with the documented mask on w; x @ w + b in test."""
    x, w, b = rng.standard_normal((4, 6)), rng.standard_normal((6, 5)), rng.standard_normal(5)
    seed = int(rng.integers(1_000_000))
    param = {"keep_prob": 0.7, "mode": "train", "seed": seed}
    out, _ = student.dropconnect_forward(x, w, b, dict(param))
    expected = x @ (w * oracle_mask(seed, w.shape, 0.7)) + b
    assert_close(f"dropconnect_forward(x, w, b, {param})[0] (mask on w: "
                 f"np.random.default_rng(seed).random(w.shape) < keep_prob, scaled)",
                 out, expected)
    out, _ = student.dropconnect_forward(x, w, b, {"keep_prob": 0.7, "mode": "test"})
    assert_close("dropconnect_forward in test mode (x @ w + b)", out, x @ w + b)


@pytest.mark.points(3)
@pytest.mark.parametrize("mode", ["train", "test"])
def test_dropconnect_backward_numeric_gradient(student, rng, mode):
    """dropconnect_backward: dx, dw, db against numeric gradients, the mask fixed by a seed."""
    x, w, b = rng.standard_normal((4, 6)), rng.standard_normal((6, 5)), rng.standard_normal(5)
    dout = rng.standard_normal((4, 5))
    param = {"keep_prob": 0.5, "mode": mode, "seed": int(rng.integers(1_000_000))}
    _, cache = student.dropconnect_forward(x, w, b, dict(param))
    grads = student.dropconnect_backward(dout, cache)
    if not isinstance(grads, (tuple, list)) or len(grads) != 3:
        raise CheckFailure("dropconnect_backward must return a tuple (dx, dw, db).")
    dx, dw, db = grads
    f = student.dropconnect_forward
    dx_num = eval_numerical_gradient_array(lambda v: f(v, w, b, dict(param))[0], x.copy(), dout)
    dw_num = eval_numerical_gradient_array(lambda v: f(x, v, b, dict(param))[0], w.copy(), dout)
    db_num = eval_numerical_gradient_array(lambda v: f(x, w, v, dict(param))[0], b.copy(), dout)
    assert_rel_error(f"dx of dropconnect_backward ({mode})", dx, dx_num, max_error=1e-7)
    assert_rel_error(f"dw of dropconnect_backward ({mode})", dw, dw_num, max_error=1e-7)
    assert_rel_error(f"db of dropconnect_backward ({mode})", db, db_num, max_error=1e-7)


@pytest.mark.points(2)
def test_dropconnect_backward_reuses_the_mask(student, rng):
    """Without a seed, dropconnect_backward uses the weights the forward pass used."""
    d, m = 6, 5
    w, b = rng.uniform(1.0, 2.0, size=(d, m)), rng.standard_normal(m)
    eye = np.eye(d)
    out, cache = student.dropconnect_forward(eye, w, b, {"keep_prob": 0.5, "mode": "train"})
    w_used = np.asarray(out) - b  # row i of eye @ W_used + b is W_used[i] + b
    dout = rng.standard_normal((d, m))
    dx, dw, db = student.dropconnect_backward(dout, cache)
    assert_close("dx of dropconnect_backward (dout @ (the forward pass's masked w).T)",
                 dx, dout @ w_used.T)
    assert_close("dw of dropconnect_backward (x.T @ dout times the forward pass's mask)",
                 dw, (eye.T @ dout) * (w_used / w))
    assert_close("db of dropconnect_backward", db, dout.sum(axis=0))


# --- majority_vote -------------------------------------------------------------------------


@pytest.mark.points(2)
def test_majority_vote_by_hand(student):
    """majority_vote on hand-made votes: 3 models, 4 examples, one label with a gap."""
    predictions = np.array([[0, 1, 2, 7],
                            [0, 2, 2, 0],
                            [1, 1, 0, 7]])
    votes = student.majority_vote(predictions)
    assert_close("majority_vote(predictions)", votes, np.array([0, 1, 2, 7]), check_dtype=True)


@pytest.mark.points(2)
def test_majority_vote_ties_go_to_the_smallest_label(student):
    """Ties: the smallest of the most voted labels wins."""
    predictions = np.array([[3, 1, 4, 2, 9],
                            [1, 3, 4, 5, 0],
                            [3, 1, 0, 5, 9],
                            [1, 3, 0, 2, 0]])
    votes = student.majority_vote(predictions)
    assert_close("majority_vote with ties (each column has two labels with 2 votes each; the "
                 "smallest one wins)", votes, np.array([1, 1, 0, 2, 0]))


@pytest.mark.points(1)
def test_majority_vote_single_model(student, rng):
    """With one model, the vote is that model's prediction."""
    predictions = rng.integers(0, 10, size=(1, 25))
    assert_close("majority_vote of a single model", student.majority_vote(predictions),
                 predictions[0], check_dtype=True)


@pytest.mark.points(2)
def test_majority_vote_random(student, rng):
    """majority_vote on random votes of 7 models, against bincount per example."""
    predictions = rng.integers(0, 4, size=(7, 200))
    expected = np.array([np.bincount(col, minlength=4).argmax() for col in predictions.T])
    assert_close("majority_vote(predictions) (7 models, 200 examples)",
                 student.majority_vote(predictions), expected, check_dtype=True)


# --- average_probabilities -----------------------------------------------------------------


@pytest.mark.points(2)
def test_average_probabilities_by_hand(student):
    """Two models, two examples, three classes, worked out by hand."""
    logits = np.array([[[1.0, 1.0, 1.0], [np.log(3.0), 0.0, 0.0]],
                       [[np.log(2.0), 0.0, np.log(5.0)], [0.0, 0.0, 0.0]]])
    # Example 0: (1/3, 1/3, 1/3) and (2, 1, 5) / 8, average (7/24, 11/48, 23/48).
    # Example 1: (3, 1, 1) / 5 and (1/3, 1/3, 1/3), average (7/15, 4/15, 4/15).
    probs = student.average_probabilities(logits)
    assert_close("average_probabilities(logits) (average the softmax of each model, not the "
                 "logits)", probs, np.array([[7 / 24, 11 / 48, 23 / 48], [7 / 15, 4 / 15, 4 / 15]]))


@pytest.mark.points(2)
def test_average_probabilities_random(student, reference, rng):
    """average_probabilities of random logits (5 models) vs torch.softmax then mean."""
    logits = rng.standard_normal((5, 30, 10)) * 3
    expected = torch.softmax(torch.from_numpy(logits), dim=2).mean(dim=0).numpy()
    probs, ours = call_both("average_probabilities", student.average_probabilities,
                            reference.average_probabilities, logits, names=("logits",))
    assert_close("average_probabilities(logits)", probs, expected)
    assert_close("average_probabilities(logits).sum(axis=1)", np.asarray(probs).sum(axis=1),
                 np.ones(30))
    assert_close("average_probabilities(logits) vs the reference", probs, ours)


@pytest.mark.points(1)
def test_average_probabilities_single_model_and_large_logits(student, rng):
    """One model: its softmax. Logits of 1000 give no nan or inf (stable softmax)."""
    logits = rng.standard_normal((1, 8, 4)) + np.array([0.0, 1000.0, 999.0, -1000.0])
    expected = torch.softmax(torch.from_numpy(logits[0]), dim=1).numpy()
    assert_close("average_probabilities of one model with logits near 1000 (subtract each "
                 "row's maximum before exp)", student.average_probabilities(logits), expected)


@pytest.mark.points(1)
def test_average_probabilities_of_float32_logits_are_float64(student, rng):
    """float32 logits (what torch models give): float64 probabilities ("float array")."""
    logits = (rng.standard_normal((3, 6, 5)) * 2).astype(np.float32)
    expected = torch.softmax(torch.from_numpy(logits).double(), dim=2).mean(dim=0).numpy()
    assert_close("average_probabilities(float32 logits)", student.average_probabilities(logits),
                 expected, check_dtype=True)


@pytest.mark.points(1)
def test_average_probabilities_rows_far_apart(student, rng):
    """Examples whose logits lie 2,000 apart: each row is shifted by its own maximum."""
    logits = rng.standard_normal((2, 4, 3))
    logits[:, 0] += 1000.0
    logits[:, 2] -= 1000.0  # one maximum for all rows would underflow this row to 0 / 0
    expected = torch.softmax(torch.from_numpy(logits), dim=2).mean(dim=0).numpy()
    assert_close("average_probabilities of examples with logits near +1000 and near -1000 "
                 "(subtract each row's own maximum, not one maximum for all)",
                 student.average_probabilities(logits), expected)


# --- ensemble_predict ----------------------------------------------------------------------
# The models handed to ensemble_predict are built inside the student's process from a spec
# and a state_dict (autograder.sandbox.modules.lend); the check computes the expected answer
# on its own copies, which the student's code never reaches.


def linear_spec(n_in, n_out, bias=False):
    return module_spec("torch.nn.Linear", n_in, n_out, bias=bias)


def table_state(table):
    """The state of a bias-free Linear whose logits on x = eye(N) are the rows of ``table``."""
    return {"weight": torch.tensor(table, dtype=torch.float32).T.contiguous()}


def lend_table_model(student, table):
    table = np.asarray(table, dtype=np.float32)
    return lend(student, linear_spec(*table.shape), table_state(table))


@pytest.mark.points(3)
def test_ensemble_predict_by_hand(student):
    """Hand-built models: a single model, a tie between two models, and vote vs average."""
    eye3, eye2 = np.eye(3, dtype=np.float32), np.eye(2, dtype=np.float32)
    single = [lend_table_model(student, [[1, 2, 0], [3, 0, 0], [0, 0, -1]])]
    for method in ("vote", "average"):
        assert_close(f"ensemble_predict(one model, x, {method!r}) (the model's own argmax)",
                     student.ensemble_predict(single, eye3, method), np.array([1, 0, 0]),
                     check_dtype=True)
    # Two models that disagree: the vote is a tie (smallest label); the average follows
    # the confident model.
    pair = [lend_table_model(student, [[0, 0, 6], [4, 0, 0]]),
            lend_table_model(student, [[0, 1, 0], [0, 0, 0.5]])]
    assert_close('ensemble_predict(two models, x, "vote") (ties go to the smallest label)',
                 student.ensemble_predict(pair, eye2, "vote"), np.array([1, 0]))
    assert_close('ensemble_predict(two models, x, "average")',
                 student.ensemble_predict(pair, eye2, "average"), np.array([2, 0]))
    # Three models: two weak votes for 0 beat one confident 2; the average picks 2.
    trio = [lend_table_model(student, t) for t in ([[0, 0, 9]], [[1, 0, 0]], [[1, 0, 0]])]
    x = np.eye(1, dtype=np.float32)
    assert_close('ensemble_predict(three models, x, "vote")',
                 student.ensemble_predict(trio, x, "vote"), np.array([0]))
    assert_close('ensemble_predict(three models, x, "average")',
                 student.ensemble_predict(trio, x, "average"), np.array([2]))


STOCHASTIC_SPEC = module_spec(
    "torch.nn.Sequential", module_spec("torch.nn.Linear", 6, 32),
    module_spec("torch.nn.BatchNorm1d", 32), module_spec("torch.nn.ReLU"),
    module_spec("torch.nn.Dropout", p=0.5), module_spec("torch.nn.Linear", 32, 5))


def stochastic_model(seed):
    """A small model with batch norm and dropout, with running statistics != batch ones."""
    torch.manual_seed(seed)
    model = build_module(STOCHASTIC_SPEC)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(64, 6) * 3 + 2)  # running statistics far from a test batch's
    return model


@pytest.mark.points(3)
@pytest.mark.parametrize("method", ["vote", "average"])
def test_ensemble_predict_uses_eval_mode(student, seed, method):
    """Models handed over in train mode: predictions as in eval mode, models left in eval mode."""
    models = [stochastic_model(seed + i) for i in range(3)]
    theirs = [lend(student, STOCHASTIC_SPEC, m.state_dict(), train=True) for m in models]
    x = torch.randn(80, 6)
    with torch.no_grad():
        for m in models:
            m.eval()
        logits = np.stack([m(x).numpy() for m in models])
    if method == "vote":
        expected = np.array([np.bincount(col, minlength=5).argmax()
                             for col in logits.argmax(axis=2).T])
    else:
        expected = torch.softmax(torch.from_numpy(logits), dim=2).mean(dim=0).argmax(dim=1).numpy()
    labels = student.ensemble_predict(theirs, x, method)
    assert_close(f"ensemble_predict(models, x, {method!r}) on models with dropout and batch "
                 f"norm, handed over in train mode (call model.eval() on each model)",
                 labels, expected)
    for i, (m, t) in enumerate(zip(models, theirs, strict=True)):
        if any(module.training for module in t.modules()):
            raise CheckFailure(f"model {i} is in train mode after ensemble_predict: leave the "
                               f"models in eval mode (model.eval()).")
        if not torch.equal(t.state_dict()["1.running_mean"], m[1].running_mean):
            raise CheckFailure(f"ensemble_predict changed the batch norm running statistics of "
                               f"model {i}: it ran it in train mode.")


PROBED_SPEC = module_spec("CallRecorder", module_spec(
    "torch.nn.Sequential", module_spec("torch.nn.Flatten"), module_spec("torch.nn.Linear", 12, 4)))


@pytest.mark.points(2)
def test_ensemble_predict_no_grad_and_batches(student, reference, seed):
    """ensemble_predict runs under torch.no_grad(), in batches of at most batch_size."""
    torch.manual_seed(seed)
    models = [build_module(PROBED_SPEC) for _ in range(2)]
    theirs = [lend(student, PROBED_SPEC, m.state_dict()) for m in models]
    x = torch.randn(7, 3, 2, 2)
    labels = student.ensemble_predict(theirs, x, "average", batch_size=3)
    for i, t in enumerate(theirs):
        calls = [tuple(c) for c in t.calls]
        if not calls:
            raise CheckFailure(f"ensemble_predict never called model {i}.")
        if any(grad for _, grad in calls):
            raise CheckFailure("ensemble_predict ran a model with gradients on: wrap the forward "
                               "passes in `with torch.no_grad():`.")
        sizes = [n for n, _ in calls]
        if sum(sizes) != 7 or max(sizes) > 3:
            raise CheckFailure(f"ensemble_predict(models, x of 7 examples, batch_size=3) fed "
                               f"model {i} batches of sizes {sizes}; expected at most 3 each, "
                               f"7 in all.")
    expected = reference.ensemble_predict([m.inner for m in models], x, "average")
    assert_close("ensemble_predict(models, x, 'average', batch_size=3)", labels, expected,
                 check_dtype=True)
    numpy_x = student.ensemble_predict(theirs, x.numpy(), "average", batch_size=3)
    assert_close("ensemble_predict with x given as a numpy array", numpy_x, expected)


@pytest.mark.points(1)
def test_ensemble_predict_default_method_is_average(student):
    """ensemble_predict(models, x) averages the probabilities (its default method)."""
    # Two weak votes for 0 against one confident 2: the vote says 0, the average 2.
    trio = [lend_table_model(student, t) for t in ([[0, 0, 9]], [[1, 0, 0]], [[1, 0, 0]])]
    assert_close("ensemble_predict(models, x) (the default method is \"average\")",
                 student.ensemble_predict(trio, np.eye(1, dtype=np.float32)), np.array([2]))


@pytest.mark.points(1)
def test_ensemble_predict_unknown_method(student):
    """An unknown method raises ValueError."""
    models = [lend_table_model(student, [[1.0, 0.0]])]
    assert_raises('ensemble_predict(models, x, "median")', ValueError, student.ensemble_predict,
                  models, np.eye(1, dtype=np.float32), "median")
