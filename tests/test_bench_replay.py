"""The replay harness and its metrics on a tiny constructed table with a known front."""

from __future__ import annotations

import math

import numpy as np
import pytest

from attnbench.metrics import FrontScorer, first_reaching, on_grid, trace_metrics
from attnbench.replay import Method, promotable, replay, replay_once, summarize
from attnbench.table import from_curves
from nas_attn.errors import ConfigError
from nas_attn.search.pruning import HalvingConfig

# A (0.9, 4), B (0.8, 2), C (0.6, 1) form the front; D (0.7, 3) is dominated by B.
MEANS = [0.9, 0.8, 0.6, 0.7]
FLOPS = [4.0, 2.0, 1.0, 3.0]
HALF = [0.12 / math.sqrt(2), 0.01, 0.01, 0.01]  # seed spread: A's seed std is 0.12


def tiny_table(epochs: int = 3):
    acc = np.zeros((4, 2, epochs), dtype=np.float32)
    for a, (m, d) in enumerate(zip(MEANS, HALF, strict=True)):
        for s, sign in enumerate((-1, 1)):
            acc[a, s] = np.linspace(0.1, m + sign * d, epochs)
    params = [{"x": i} for i in range(4)]
    return from_curves(acc, FLOPS, [10, 20, 30, 40], params, [0, 1])


def product_table(n_x: int = 4, n_y: int = 3, epochs: int = 4, seeds: int = 3):
    """A 12-architecture product space with a noisy, learnable structure."""
    rng = np.random.default_rng(0)
    params, flops, acc = [], [], []
    for x in range(n_x):
        for y in range(n_y):
            params.append({"x": x, "y": y})
            flops.append(1.0 + x + 0.5 * y)
            final = 0.3 + 0.1 * x + 0.05 * y - 0.02 * x * y
            curves = [np.linspace(0.1, final, epochs) + rng.normal(0, 0.01, epochs)
                      for _ in range(seeds)]
            acc.append(np.clip(curves, 0, 1))
    return from_curves(np.asarray(acc), flops, [1] * len(params), params, list(range(seeds)))


def test_front_and_reference_point():
    t = tiny_table()
    assert sorted(t.true_front.tolist()) == [0, 1, 2]
    assert t.reference_point == pytest.approx((0.57, 4.3))
    assert t.final_std[0] == pytest.approx(0.12, abs=1e-6)


def test_startup_oracle_counts_the_random_prefix_then_the_best_additions():
    from attnbench.metrics import startup_oracle_trials

    sc = FrontScorer.of(tiny_table())  # HV: D alone 0.287, B+D 0.898, B+A or B+C 0.949
    assert startup_oracle_trials(sc, [3], 0.25) == (1, True)  # the random trial suffices
    assert startup_oracle_trials(sc, [3, 1], 0.85) == (2, True)
    assert startup_oracle_trials(sc, [3], 0.85) == (2, True)  # + B, the best single addition
    assert startup_oracle_trials(sc, [3], 0.9) == (3, True)  # no single one does: 2 more
    assert startup_oracle_trials(sc, [3], 0.95) == (4, False)  # the whole front: 3 more
    assert startup_oracle_trials(sc, [], 0.85) == (1, True)  # no startup: B at once


def test_metrics_exact_on_known_front():
    sc = FrontScorer.of(tiny_table())
    assert sc.hv_true == pytest.approx(0.099 + 0.46 + 0.03, abs=1e-6)
    m = sc.score([1, 3])
    assert m["hv_ratio"] == pytest.approx(0.529 / 0.589, abs=1e-5)
    assert m["recall_exact"] == pytest.approx(1 / 3)
    assert m["recall_std"] == pytest.approx(2 / 3)  # B is within A's seed std; nothing near C
    assert m["igd_plus"] == pytest.approx(2 / 9, abs=1e-6)
    full = sc.score([0, 1, 2])
    assert full == pytest.approx({"hv_ratio": 1.0, "recall_exact": 1.0, "recall_std": 1.0,
                                  "igd_plus": 0.0})
    empty = sc.score([])
    assert empty["hv_ratio"] == 0.0 and math.isnan(empty["igd_plus"])


def test_trace_only_counts_complete_trials():
    sc = FrontScorer.of(tiny_table())
    tr = trace_metrics(sc, [3, 0, 1, 2, 2], [True, False, True, True, True])
    assert tr["recall_exact"].tolist() == pytest.approx([0, 0, 1 / 3, 2 / 3, 2 / 3])
    assert tr["hv_ratio"][-1] == pytest.approx(sc.score([1, 2])["hv_ratio"])
    assert tr["hv_ratio"][0] == pytest.approx(sc.score([3])["hv_ratio"])


def test_first_reaching_and_grid():
    v = np.array([0.1, 0.5, 0.96, 0.97])
    assert first_reaching(v, np.arange(1, 5), 0.95) == 3
    assert first_reaching(v, np.arange(1, 5), 0.99) == math.inf
    assert on_grid(v, np.array([3, 6, 7, 10]), np.array([0, 3, 5, 7, 100])).tolist() == \
        [0.0, 0.1, 0.1, 0.96, 0.97]


@pytest.mark.parametrize("sampler", ["random", "tpe", "nsga2"])
def test_replay_without_stopping(sampler):
    t = product_table()
    run = replay_once(t, Method(sampler), 30, rep=1, scorer=FrontScorer.of(t))
    first = {}
    for k, a in enumerate(run.archs.tolist()):
        first.setdefault(a, k)
    fresh = np.array([first[a] == k for k, a in enumerate(run.archs.tolist())])
    assert run.complete.all()
    assert (run.epochs == np.where(fresh, t.epochs, 0)).all()  # duplicates cost nothing
    assert ((run.seeds >= 0) == fresh).all() and run.seeds.max() < t.n_seeds
    # the trace equals a from-scratch score of every prefix
    sc = FrontScorer.of(t)
    for k in (0, 9, 29):
        assert run.metrics["hv_ratio"][k] == pytest.approx(
            sc.score(run.archs[: k + 1])["hv_ratio"])
    assert np.all(np.diff(run.metrics["hv_ratio"]) >= -1e-12)
    again = replay_once(t, Method(sampler), 30, rep=1)
    assert again.archs.tolist() == run.archs.tolist()  # reproducible per rep


def test_replay_with_pareto_halving():
    t = product_table(epochs=4)
    cfg = HalvingConfig(max_epochs=4, eta=2, grace_epochs=1)  # rungs 1, 2
    run = replay_once(t, Method("random", cfg), 40, rep=3, scorer=FrontScorer.of(t))
    fresh = run.seeds >= 0
    assert set(run.epochs[fresh].tolist()) <= {1, 2, 4}
    assert (run.epochs[fresh] < 4).any()  # something was stopped
    assert (run.complete[fresh] == (run.epochs[fresh] == 4)).all()
    # metrics use COMPLETE trials only
    sc = FrontScorer.of(t)
    assert run.metrics["recall_exact"][-1] == pytest.approx(
        sc.score(run.archs[run.complete])["recall_exact"])
    plain = replay_once(t, Method("random"), 40, rep=3)
    assert run.consumed[-1] < plain.consumed[-1]


def test_oracle_ranking_sees_the_mean_final_accuracy_not_the_curve():
    t = product_table(epochs=4)
    acc = t.acc.copy()
    acc[:, :, :-1] = 1.0 - acc[:, :, :-1]  # early epochs now rank the architectures backwards
    flipped = from_curves(acc, t.flops, t.params, list(t.arch_params), t.seeds)
    cfg = HalvingConfig(max_epochs=4, eta=2, grace_epochs=1)  # rungs 1, 2

    def run(table, oracle):
        r = replay_once(table, Method("random", cfg, oracle_ranking=oracle), 40, rep=5)
        return r.epochs.tolist(), r.complete.tolist()

    # the random sampler proposes the same architectures whatever it is told, so only what the
    # rungs see can change the decisions: with the oracle it is the same on both tables
    assert run(t, True) == run(flipped, True)
    assert run(t, False) != run(flipped, False)
    assert Method("random", cfg, oracle_ranking=True).name == "random+es+oracle"


def test_promotion_resumes_pruned_architectures_without_paying_twice():
    t = product_table(epochs=4)
    cfg = HalvingConfig(max_epochs=4, eta=2, grace_epochs=1)  # rungs 1, 2
    plain = replay_once(t, Method("random", cfg), 60, rep=3)
    promoting = HalvingConfig(max_epochs=4, eta=2, grace_epochs=1, promote=True)
    run = replay_once(t, Method("random", promoting), 60, rep=3)
    assert Method("random", promoting).name == "random+es+promote"
    paid = np.zeros(t.n_archs, dtype=int)
    first_seed: dict[int, int] = {}
    promoted = 0
    for a, s, e, done in zip(run.archs, run.seeds, run.epochs, run.complete, strict=True):
        if s >= 0:  # trained (first time or promoted): the same seed curve continues
            promoted += a in first_seed
            assert first_seed.setdefault(int(a), int(s)) == s
        paid[a] += e
        assert paid[a] <= t.epochs  # never pays twice for the same epochs
        if done:
            assert paid[a] == t.epochs
    assert promoted > 0  # the 12-architecture space is re-proposed within 60 trials
    # without promotion a re-proposed pruned architecture costs nothing and stays PRUNED
    again = [k for k in range(60) if plain.seeds[k] < 0 and plain.archs[k] in
             {int(a) for a, d in zip(plain.archs[:k], plain.complete[:k], strict=True)
              if not d}]
    assert again and all(plain.epochs[k] == 0 and not plain.complete[k] for k in again)
    off = HalvingConfig(max_epochs=4, enabled=False, promote=True)
    assert not Method("random", off).promote  # no stopping, nothing to promote


def test_promotable_takes_the_highest_rung_first_and_the_top_floor_n_over_eta():
    # at rung 1, trial 1 dominates 0 and 3; the front {1, 2} leads (crowding ties, then accuracy)
    rung1 = [(0, 0.5, 4.0), (1, 0.6, 2.0), (2, 0.3, 1.0), (3, 0.4, 3.0)]
    assert promotable({1: rung1, 3: [(1, 0.7, 2.0)]}, {0: 1, 1: 3, 2: 1, 3: 1}, 2) == 2
    assert promotable({1: rung1}, {0: 1, 3: 1}, 2) is None  # only the top 2 may go on
    assert promotable({1: rung1}, {1: 1, 2: 1}, 4) == 1  # floor(4 / 4) = 1
    assert promotable({1: rung1[:1]}, {0: 1}, 2) is None  # floor(1 / 2) = 0: no one yet
    rung3 = [(5, 0.7, 2.0), (6, 0.2, 9.0)]
    assert promotable({1: rung1, 3: rung3}, {5: 3, 2: 1}, 2) == 5  # highest rung first
    assert promotable({}, {}, 3) is None


@pytest.mark.parametrize("oracle", [False, True])
def test_pause_replays_promotion_type_halving_exactly(oracle):
    """Every step is checked against the rule: a resume of :func:`promotable`'s pick whenever
    there is one (paying the epochs to the next rung), else a sampler proposal that pauses at
    the first rung (or costs nothing when it is a duplicate)."""
    t = product_table(epochs=4)
    cfg = HalvingConfig(max_epochs=4, eta=2, grace_epochs=1)  # rungs 1, 2; levels 1, 2, 4
    method = Method("random", cfg, pause=True, oracle_ranking=oracle)
    run = replay_once(t, method, 60, rep=3, scorer=FrontScorer.of(t))
    assert method.name == "random+es+pause" + ("+oracle" if oracle else "")
    tables: dict[int, list] = {1: [], 2: []}
    paused: dict[int, int] = {}
    level = {0: 1, 1: 2, 2: 4}
    reached: dict[int, int] = {}
    first_seed: dict[int, int] = {}
    resumes = 0
    for a, s, e, done in zip(run.archs, run.seeds, run.epochs, run.complete, strict=True):
        a = int(a)
        pick = promotable(tables, paused, 2)
        if pick is not None:
            resumes += 1
            assert a == pick and s == first_seed[a]  # the same training continues
            start = paused.pop(a)
        elif a in reached:  # a duplicate proposal: its earlier outcome, no epochs
            assert s < 0 and e == 0 and done == (reached[a] == 4)
            continue
        else:
            start = 0
            first_seed[a] = int(s)
        end = level[start]
        assert e == end - start and done == (end == 4)
        reached[a] = end
        if end < 4:
            acc = t.final_mean[a] if oracle else t.acc[a, s, end - 1]
            tables[end].append((a, float(acc), float(t.flops[a])))
            paused[a] = end
    assert resumes > 0 and run.complete.any()
    assert run.metrics["hv_ratio"][-1] == pytest.approx(
        FrontScorer.of(t).score(run.archs[run.complete])["hv_ratio"])


@pytest.mark.parametrize("sampler", ["tpe", "gp"])
def test_pause_resumes_through_the_model_samplers(sampler):
    """A resume is an enqueued trial: the model samplers take it (also learning from the
    paused trials) and the replay gets the architecture it asked for."""
    t = product_table(epochs=4)
    cfg = HalvingConfig(max_epochs=4, eta=2, grace_epochs=1)
    run = replay_once(t, Method(sampler, cfg, startup=3, pause=True, learn_from_pruned=True),
                      16, rep=0)
    resumed = [k for k in range(16) if run.seeds[k] >= 0 and run.archs[k] in run.archs[:k]]
    assert resumed and run.complete.any()


def test_startup_bound_is_never_slower_than_the_random_runs_it_starts_from():
    from attnbench.report import startup_bound

    t = product_table()
    runs = replay(t, [Method("random")], n_trials=30, reps=4)["random"]
    b = startup_bound(runs, FrontScorer.of(t), startup=5, level=0.9)
    assert b["exact"] and len(b["oracle_trials"]) == 4  # at most 2 additions here
    for k, r in zip(b["oracle_trials"], runs, strict=True):
        own = first_reaching(r.metrics["hv_ratio"], np.arange(1, 31), 0.9)
        assert k <= own and k <= 5 + 2
        if own <= 5:
            assert k == own  # reached within the random startup: the same trial
    assert b["max_speedup"] == pytest.approx(b["median_random"] / b["median_oracle"])


def test_random_sampler_weights_follow_the_define_by_run_decisions():
    from attnbench.metrics import random_sampler_weights

    # one stage: none (no position decision) or se/eca at post_bn/post_add; p(none) = 1/3,
    # each (module, position) 1/3 * 1/2
    params = [{"s.att": "none"}] + [{"s.att": m, "s.pos": p} for m in ("se", "eca")
                                    for p in ("post_bn", "post_add")]
    w = random_sampler_weights(params)
    assert w == pytest.approx([1 / 3] + [1 / 6] * 4)
    assert random_sampler_weights(product_table().arch_params) == pytest.approx([1 / 12] * 12)


def test_sampled_startup_bound_matches_its_definition():
    from attnbench.metrics import startup_oracle_trials
    from attnbench.report import sampled_startup_bound

    t = tiny_table()
    sc = FrontScorer.of(t)
    # all weight on D (dominated, HV 0.287): random search never reaches 0.9, the oracle
    # needs D plus 2 (B then A or C)
    b = sampled_startup_bound(sc, [0, 0, 0, 1], reps=3, trials=20, startup=1, level=0.9)
    assert b["median_random"] == math.inf and b["oracle_trials"] == [3, 3, 3]
    # uniform: each rep's oracle count is startup_oracle_trials on the same draws
    b = sampled_startup_bound(sc, reps=5, trials=50, startup=2, level=0.9, seed=1)
    rng = np.random.default_rng(1)
    for k in b["oracle_trials"]:
        draws = rng.choice(4, size=50)
        assert k == startup_oracle_trials(sc, draws[:2].tolist(), 0.9)[0]
    assert b["max_speedup"] == pytest.approx(b["median_random"] / b["median_oracle"])
    assert 1 <= b["median_oracle"] <= b["median_random"] + 2


def test_bootstrap_intervals_bracket_the_median_and_handle_never_reached():
    from attnbench.metrics import median_ci, ratio_ci

    v = [5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0]
    lo, hi = median_ci(v)
    assert lo <= np.median(v) <= hi and min(v) <= lo and hi <= max(v)
    assert median_ci([4.0] * 6) == (4.0, 4.0)
    assert median_ci([3.0, math.inf, math.inf, math.inf, math.inf])[1] == math.inf
    lo, hi = ratio_ci([20.0] * 5, [10.0] * 5)
    assert lo == hi == 2.0
    lo, hi = ratio_ci([2 * x for x in v], v)  # independent resampling: spread around 2
    assert lo < 2.0 < hi


def test_startup_is_part_of_the_method_and_its_sampler():
    from attnbench.replay import make_sampler

    assert Method("tpe", startup=4).name == "tpe-s4"
    assert Method("gp", HalvingConfig(max_epochs=3), startup=2).name == "gp-s2+es"
    assert make_sampler("tpe", 0, 4)._n_startup_trials == 4
    with pytest.raises(ConfigError, match="startup"):
        Method("random", startup=3)
    t = product_table()
    a, b = (replay_once(t, Method("tpe", startup=k), n_trials=12, rep=0) for k in (2, 12))
    assert a.archs[:2].tolist() == b.archs[:2].tolist()  # the same seeded random start
    assert a.archs.tolist() != b.archs.tolist()  # then TPE's model, from trial 3 on


def test_learning_from_pruned_trials_is_part_of_the_method_and_changes_gp():
    """The replay records what the runner records on a trial (the objective names on the
    study, costs and the last accuracy on each trial), so the pruned-aware GP sees the PRUNED
    trials; it then proposes differently from the plain GP on the same draws."""
    cfg = HalvingConfig(max_epochs=4, eta=2, grace_epochs=1)
    plain, learn = Method("gp", cfg, startup=2), Method("gp", cfg, startup=2,
                                                          learn_from_pruned=True)
    assert learn.name == "gp-s2+es+learn" and plain.name == "gp-s2+es"
    t = product_table()
    a, b = (replay_once(t, m, n_trials=10, rep=1) for m in (plain, learn))
    assert (~a.complete[:4]).any()  # some early trials were pruned ...
    assert a.archs[:2].tolist() == b.archs[:2].tolist()  # ... after the same random start
    assert a.archs.tolist() != b.archs.tolist()


def test_replay_many_and_summary():
    t = product_table()
    runs = replay(t, [Method("random"), Method("tpe")], n_trials=25, reps=3)
    s = summarize(runs)
    assert set(s) == {"random", "tpe"} and s["random"]["reps"] == 3
    for v in s.values():
        assert 0 < v["hv_ratio"] <= 1 + 1e-9
        assert v["trials_to_target"] >= 1
        lo, hi = v["trials_to_target_ci"]
        assert lo <= v["trials_to_target"] <= hi


def test_bad_inputs():
    t = product_table()
    with pytest.raises(ConfigError, match="sampler"):
        Method("cmaes")
    with pytest.raises(ConfigError, match="max_epochs"):
        replay_once(t, Method("random", HalvingConfig(max_epochs=9)), 5, rep=0)
    with pytest.raises(ConfigError, match="n_trials"):
        replay_once(t, Method("random"), 0, rep=0)
    with pytest.raises(ConfigError, match="early stopping") as e:
        Method("random", oracle_ranking=True)
    assert e.value.field == "oracle_ranking"
    with pytest.raises(ConfigError, match="reps"):
        replay(t, [Method("random")], 5, reps=0)
    with pytest.raises(ConfigError, match="early stopping") as e:
        Method("random", pause=True)
    assert e.value.field == "pause"
    for cfg in (dict(promote=True), dict(stop_dominated=True)):
        with pytest.raises(ConfigError, match="promote and stop_dominated off"):
            Method("random", HalvingConfig(max_epochs=4, **cfg), pause=True)


def _run(name, hv, epochs, recall=None):
    from attnbench.replay import ReplayRun

    n = len(hv)
    metrics = {"hv_ratio": np.asarray(hv, float),
               "recall_exact": np.zeros(n) if recall is None else np.asarray(recall, float),
               "recall_std": np.zeros(n), "igd_plus": np.ones(n)}
    return ReplayRun(name, 0, np.arange(n), np.zeros(n, int), np.asarray(epochs) == 9,
                     np.asarray(epochs), 0.0, metrics)


def test_targets_exact():
    from attnbench.report import targets

    runs = {"random": [_run("random", [0.2, 0.5, 0.8, 0.96], [9, 9, 9, 9])],
            "tpe": [_run("tpe", [0.5, 0.96, 0.97, 0.98], [9, 9, 9, 9])],
            "tpe+es": [_run("tpe+es", [0.5, 0.9, 0.96, 0.97], [1, 3, 9, 1])]}
    s = summarize(runs)
    assert s["random"]["trials_to_target"] == 4 and s["tpe"]["trials_to_target"] == 2
    assert s["tpe+es"]["epochs_to_target"] == 13 and s["tpe"]["epochs_to_target"] == 18
    g = targets(s, runs, n_archs=16)
    assert g["search"] == {"best": "tpe", "best_trials": 2.0, "random_trials": 4.0,
                           "speedup_vs_random": 2.0, "speedup_ci95": [2.0, 2.0],
                           "within_quarter": True, "twice_fewer_than_random": True}
    es = g["early_stopping"]["tpe+es"]
    assert es["hv_level"] == 0.95 and es["epoch_ratio"] == pytest.approx(13 / 18)
    assert es["final_hv_keep"] == pytest.approx(0.97 / 0.98) and es["keep_ok"]
    assert not es["epoch_ratio_ok"]
    assert es["epoch_ratio_ci95"] == pytest.approx([13 / 18, 13 / 18])  # one rep each

    # A sampler replayed with fewer trials counts when it reached the target (its median is
    # measured), not when it did not.
    for hv, best in (([0.97, 0.98], "gp"), ([0.5, 0.6], "tpe")):
        both = {**runs, "gp": [_run("gp", hv, [9, 9])]}
        assert targets(summarize(both), both, 16)["search"]["best"] == best


def test_report_outputs():
    from attnbench.report import curves, curves_svg, markdown_table, plot_replay

    t = product_table()
    cfg = HalvingConfig(max_epochs=4, eta=2)
    cfg2 = HalvingConfig(max_epochs=4, eta=3)
    runs = replay(t, [Method("random"), Method("random", cfg), Method("random", cfg2, "(3,1)")],
                  n_trials=10, reps=2)
    c = curves(runs, points=20)
    assert c.by_trials["random"].shape == (3, 10) and c.by_epochs["random+es"].shape == (3, 20)
    assert np.all(np.diff(c.by_epochs["random"][1]) >= -1e-12)
    md = markdown_table(summarize(runs))
    assert md.count("\n") == 4 and "random+es" in md and "random+es(3,1)" in md
    svg = curves_svg(c)
    assert svg.startswith("<svg") and svg.count("<polyline") == 6
    assert svg.count('stroke-dasharray="6,3"') == 3 and svg.count('stroke-dasharray="2,2"') == 3
    fig = plot_replay(c)
    # one trace per method and panel; each early-stopping setting has its own dash
    assert [tr.line.dash for tr in fig.data] == ["solid"] * 2 + ["dash"] * 2 + ["dot"] * 2


def test_truncate_cuts_every_trial_field_and_metric():
    from attnbench.report import curves, truncate

    t = product_table(epochs=4)
    cfg = HalvingConfig(max_epochs=4, eta=2, grace_epochs=1)
    runs = replay(t, [Method("random"), Method("random", cfg)], 20, reps=2)
    cut = truncate(runs, 7)
    for name, rs in runs.items():
        for whole, part in zip(rs, cut[name], strict=True):
            assert len(part.archs) == len(part.seeds) == len(part.complete) == 7
            assert part.epochs.tolist() == whole.epochs[:7].tolist()
            assert part.consumed[-1] == whole.consumed[6]
            for k, v in whole.metrics.items():
                assert part.metrics[k].tolist() == v[:7].tolist()
            assert len(whole.archs) == 20  # the runs themselves are left alone
    assert curves(cut).trials.tolist() == list(range(1, 8))
    with pytest.raises(ConfigError, match="n"):
        truncate(runs, 0)


def test_rank_correlation_by_epoch_exact():
    from attnbench.metrics import rank_correlation_by_epoch

    # 4 architectures, 1 seed, 3 epochs. Epoch 1 ranks the archs in reverse of the final
    # order (rho -1), epoch 2 has a tie (ranks 0.5, 0.5, 2, 3 vs 0, 1, 2, 3), epoch 3 is final.
    final = [0.5, 0.6, 0.7, 0.8]
    acc = np.array([[[0.4, 0.2, f], ] for f in final], dtype=np.float32)
    acc[:, 0, 0] = [0.4, 0.3, 0.2, 0.1]
    acc[:, 0, 1] = [0.2, 0.2, 0.3, 0.4]
    t = from_curves(acc, [1.0, 2.0, 3.0, 4.0], [1] * 4, [{"x": i} for i in range(4)], [0])
    rho = rank_correlation_by_epoch(t)
    # tie: ranks (0.5, 0.5, 2, 3) against (0, 1, 2, 3); centred (-1, -1, .5, 1.5) . (-1.5, -.5,
    # .5, 1.5) = 1.5 + .5 + .25 + 2.25 = 4.5; norms sqrt(1 + 1 + .25 + 2.25) * sqrt(5)
    expected_tie = 4.5 / math.sqrt(4.5 * 5.0)
    np.testing.assert_allclose(rho, [-1.0, expected_tie, 1.0], atol=1e-12)


def test_seed_rank_correlation_exact():
    from attnbench.metrics import seed_rank_correlation, spearman

    # 4 architectures, 3 seeds, 1 epoch. Seeds 0 and 1 agree (rho 1), seed 2 reverses them
    # (rho -1 with each): mean over the 3 pairs = (1 - 1 - 1) / 3.
    acc = np.array([[[0.1], [0.2], [0.9]], [[0.2], [0.3], [0.8]], [[0.3], [0.4], [0.7]],
                    [[0.4], [0.5], [0.6]]], dtype=np.float32)
    t = from_curves(acc, [1.0, 2.0, 3.0, 4.0], [1] * 4, [{"x": i} for i in range(4)], [0, 1, 2])
    assert seed_rank_correlation(t) == pytest.approx(-1.0 / 3.0)
    one = from_curves(acc[:, :1], [1.0, 2.0, 3.0, 4.0], [1] * 4, [{"x": i} for i in range(4)],
                      [0])
    assert math.isnan(seed_rank_correlation(one))
    assert spearman(np.array([1.0, 1.0, 1.0]), np.array([1.0, 2.0, 3.0])) == 0.0


def test_trials_to_whole_front_exact():
    # trials until exact recall is 1, median over reps; inf when half the reps never get there
    runs = {"a": [_run("a", [0.5] * 4, [9] * 4, [0, 0.5, 1, 1]),
                  _run("a", [0.5] * 4, [9] * 4, [0.5, 0.5, 0.5, 1]),
                  _run("a", [0.5] * 4, [9] * 4, [0, 0, 0, 0.5])],
            "b": [_run("b", [0.5] * 2, [9] * 2, [0, 0.5]), _run("b", [0.5] * 2, [9] * 2, [1, 1])]}
    s = summarize(runs)
    assert s["a"]["trials_to_front"] == 4.0  # median of (3, 4, inf)
    assert math.isinf(s["b"]["trials_to_front"])  # median of (inf, 1)


def test_epochs_to_levels_are_medians_of_first_reaching():
    from attnbench.report import epochs_to_levels

    runs = {"m": [_run("m", [0.5, 0.96, 1.0], [9, 9, 9]), _run("m", [0.91, 0.92, 0.99], [1, 3, 9]),
                  _run("m", [0.2, 0.3, 0.4], [9, 9, 9])]}
    got = epochs_to_levels(runs, (0.9, 0.95, 1.0))["m"]
    # level 0.9: 18, 1, never -> median 18; 0.95: 18, 13, never -> 18; 1.0: 27, never, never
    assert got == {"0.9": 18.0, "0.95": 18.0, "1": math.inf}
