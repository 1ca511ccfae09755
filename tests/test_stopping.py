"""Per-image early exit (simulate(..., exit=...)) against a brute-force loop over single images: the same exit
steps, predictions and SOPs; and the rule chosen on held-out data."""

import pytest
import torch
from nets import residual_net, spiking, vgg_net
from torch.utils.data import DataLoader, TensorDataset

from noiseadaptor import simulate
from noiseadaptor.snn.accounting import EnergyModel, SynapticCounter
from noiseadaptor.snn.stopping import ExitResult, ExitRule, choose_exit


def _trajectories(snn, x, T):
    """One image at a time, one step at a time: each image's mean output after every step 1..T and the SOPs
    of its spikes at that step."""
    counter = SynapticCounter(snn)
    runs = []
    for i in range(len(x)):
        image, total, steps = x[i : i + 1], 0, []
        snn.reset()
        for t in range(1, T + 1):
            counter.start(image, 1)
            total = total + snn.run(image, 1)[0]
            counter.stop()
            steps.append((total[0] / t, float(counter.sops.sum())))
        runs.append(steps)
    counter.remove()
    snn.reset()
    return runs, counter.analog_macs


def _brute_force(runs, y, rule):
    """Each image exits at the first step whose mean output satisfies the rule (Eq.: softmax top-1 >= c,
    top-1 - top-2 >= m), or at T; it spends the SOPs of the steps up to its exit."""
    exits, correct, sops = [], 0, 0.0
    for steps, label in zip(runs, y.tolist()):
        for t, (mean, step_sops) in enumerate(steps, start=1):
            sops += step_sops
            p = torch.softmax(mean.double(), -1).sort(descending=True).values
            holds = (rule.confidence is None or p[0] >= rule.confidence) and (
                rule.margin is None or p[0] - p[1] >= rule.margin
            )
            if (holds and t >= rule.min_steps) or t == len(steps):
                exits.append(t)
                correct += int(mean.argmax().item() == label)
                break
    return exits, correct / len(runs), sops / len(runs)


CONFIDENCES = (0.34, 0.35, 0.36, 0.37, 0.38, 0.39, 0.4, 0.42, 0.45, 0.5, 0.7, 0.9)
MARGINS = (0.0, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.2, 0.5)
RULES = [ExitRule(confidence=c) for c in CONFIDENCES] + [ExitRule(margin=m) for m in MARGINS] + [
    ExitRule(confidence=0.38, margin=0.01, min_steps=3), ExitRule(margin=0.1, min_steps=2)]  # fmt: skip


@pytest.mark.parametrize("make", [vgg_net, residual_net])
def test_exits_and_sops_are_those_of_a_loop_over_single_images(make):
    torch.manual_seed(0)
    x, y = torch.randn(20, 1, 8, 8), torch.randint(0, 3, (20,))
    snn = spiking(make(), x)
    T = 12
    result = simulate(snn, DataLoader(TensorDataset(x, y), batch_size=8), T=T, progress=False, exit=RULES,
                      steps_per_call=5)  # fmt: skip
    assert [e.rule for e in result.exits] == RULES
    runs, analog = _trajectories(snn, x, T)
    varied = 0
    for rule, got in zip(RULES, result.exits):
        exits, accuracy, sops = _brute_force(runs, y, rule)
        assert got.exits == {t: exits.count(t) for t in range(1, T + 1)}, rule
        assert got.mean_T == pytest.approx(sum(exits) / len(exits))
        assert got.accuracy == pytest.approx(accuracy)
        assert got.sops_per_sample == pytest.approx(sops, rel=1e-9)
        assert got.macs_per_sample == pytest.approx(analog * got.mean_T)
        assert got.energy_pj_per_sample == pytest.approx(EnergyModel().snn(got.macs_per_sample, sops))
        varied += len(set(exits)) > 1
    assert varied >= 2  # some rules send images out at different steps
    # a rule that never holds is the fixed-T run; an earlier exit spends less
    never = simulate(snn, [(x, y)], T=T, progress=False, exit=ExitRule(confidence=1.0))
    assert never.exits[0].mean_T == T and never.exits[0].sops_per_sample == pytest.approx(never.sops_per_sample[T])
    assert never.exits[0].accuracy == never.accuracy[T]
    assert min(e.sops_per_sample for e in result.exits) < never.sops_per_sample[T]


def test_the_rule_is_chosen_on_held_out_data():
    rule = [ExitRule(confidence=c) for c in (0.5, 0.7, 0.9)]
    results = [ExitResult(rule[0], 0.80, 2.0), ExitResult(rule[1], 0.88, 4.0), ExitResult(rule[2], 0.90, 9.0)]
    assert choose_exit(results, reference=0.90, max_drop=0.02).rule == rule[1]
    assert choose_exit(results, reference=0.99, max_drop=0.0).rule == rule[2]  # none good enough: the best


@pytest.mark.parametrize(
    "kwargs, message",
    [({}, "confidence or a margin"), ({"confidence": 1.5}, r"probability in \[0, 1\]"),
     ({"margin": 0.2, "min_steps": 0}, "min_steps")],
)  # fmt: skip
def test_a_bad_rule_is_one_line(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ExitRule(**kwargs)


def test_evaluate_reports_each_exit_rule(tmp_path, capsys):
    import json

    from noiseadaptor.cli import main

    run = ["run", "--model", "small-cnn", "--methods", "na", "--float-epochs", "1", "--epochs", "1", "--T", "2",
           "--no-progress", "--out", str(tmp_path / "run")]  # fmt: skip
    assert main(run) == 0
    checkpoint = str(tmp_path / "run" / "qat" / "na-seed0.pt")
    capsys.readouterr()
    args = ["evaluate", checkpoint, "--T", "8", "--no-progress", "--out", str(tmp_path / "ev")]
    assert main([*args, "--exit", "confidence=0.9", "margin=0.5,min_steps=2"]) == 0
    printed = capsys.readouterr().out
    assert "per-image early exit" in printed and "margin>=0.5, from step 2" in printed
    rows = json.loads((tmp_path / "ev" / "evaluation.json").read_text())["results"]["na"]["exits"]
    assert [r["rule"] for r in rows] == ["confidence>=0.9", "margin>=0.5, from step 2"]
    assert all(1 <= r["mean_T"] <= 8 and sum(r["exits"].values()) == 359 for r in rows)
    with pytest.raises(SystemExit):
        main([*args, "--exit", "confidence=high"])
    assert "confidence must be a number" in capsys.readouterr().err
