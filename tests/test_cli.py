import json
import shlex

import pytest

from noiseadaptor.cli import COMMANDS, main


def test_run_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(
        [
            "run",
            "--float-epochs",
            "1",
            "--epochs",
            "1",
            "--T",
            "8",
            "--methods",
            "na,no-noise",
            "--no-progress",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "T=8" in printed and "no-noise" in printed and "One seed: this shows" in printed  # and what it cannot
    results = json.loads((out / "results.json").read_text())["results"]
    assert set(results) == {"float", "na", "no-noise"}
    assert set(results["na"]["snn_accuracy"]) == {str(t) for t in range(1, 9)}
    assert (out / "accuracy_vs_T.png").read_bytes()[:4] == b"\x89PNG"
    # its closing hint is a command that runs: these settings over seeds (seed 0 alone here, for time)
    (hint,) = [line for line in printed.splitlines() if line.strip().startswith("noiseadaptor compare")]
    command = shlex.split(hint)[1:]
    assert command[command.index("--num-seeds") + 1] == "8"
    command[command.index("--num-seeds") + 1] = "1"
    assert main([*command, "--no-progress"]) == 0
    seeds = tmp_path / "run-seeds"
    assert json.loads((seeds / "study.json").read_text())["methods"] == ["na", "no-noise"]
    for cell in ("na-seed0.json", "no-noise-seed0.json"):  # the same settings: the run's own cells again
        ours, again = (json.loads((folder / "cells" / cell).read_text()) for folder in (out, seeds))
        assert {**ours, "seconds": None} == {**again, "seconds": None}, cell


@pytest.mark.parametrize(
    "args, message",
    [
        (["--p", "0"], "command line: p must be a positive integer"),
        (["--T", "0"], "command line: T must be a positive integer"),
        (["--methods", "na,foo"], "unknown"),
        (["--model", "resnet1000"], "unknown model"),
        (["--srp", "-1"], "--srp must be a non-negative integer"),
        (["--srp", "4", "--offset-spikes", "4"], "both two-stage corrections"),
    ],
)
def test_bad_input_is_reported_before_work(args, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--out", str(tmp_path), *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_help_explains_the_job(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = capsys.readouterr().out
    assert "Noise Adaptor" in text and "--T" in text


@pytest.mark.parametrize("command", [[], *([name] for name in COMMANDS)])
def test_every_help_page_prints(command, capsys):
    # `noiseadaptor --help` crashed once: a bare "95%" in a help string is an argparse format
    from noiseadaptor.cli import main

    with pytest.raises(SystemExit) as stop:
        main([*command, "--help"])
    assert stop.value.code == 0 and "usage: noiseadaptor" in capsys.readouterr().out


def test_run_resume_refuses_changed_settings(tmp_path, capsys):
    from noiseadaptor.cli import main

    args = ["run", "--model", "small-cnn", "--methods", "na", "--float-epochs", "1", "--epochs", "1", "--T", "2",
            "--no-progress", "--out", str(tmp_path)]  # fmt: skip
    assert main(args) == 0
    for changed in (["--batch-size", "32"], ["--float-epochs", "2"]):
        with pytest.raises(SystemExit):
            main([*args, "--resume", *changed])
        err = capsys.readouterr().err
        assert "holds a study with other settings" in err and changed[0][2:].replace("-", "_") in err
    assert main([*args, "--resume"]) == 0  # the same settings: it continues (here: nothing left to train)


def test_the_missing_data_hint_names_a_flag_run_has(tmp_path, capsys):
    from noiseadaptor.cli import build_parser, main

    with pytest.raises(SystemExit):
        main(["run", "--dataset", "mnist", "--data-dir", str(tmp_path), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert "pass --download" in err
    assert build_parser()[1]["run"].parse_args(["--download"]).download is True


def test_run_where_every_method_diverges_says_so_in_one_line(tmp_path, capsys):
    from noiseadaptor.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["run", "--model", "small-cnn", "--methods", "na", "--float-epochs", "1", "--epochs", "1", "--T", "2",
              "--lr", "1e6", "--no-progress", "--out", str(tmp_path)])  # fmt: skip
    assert stop.value.code == 2 and "every method diverged" in capsys.readouterr().err.strip().splitlines()[-1]


def test_a_closed_reader_ends_the_output_quietly_and_another_closed_pipe_is_an_error(monkeypatch, capsys):
    import os
    import sys

    def prints(args):
        print("resnet18: converts with rewrites")
        return 0

    def loses_a_worker(args):
        raise BrokenPipeError(32, "Broken pipe")

    for closed, command, expected in ((True, prints, 141), (False, loses_a_worker, 1)):
        read, write = os.pipe()
        if closed:
            os.close(read)  # `| head -1` has read its line and gone
        monkeypatch.setattr(sys, "stdout", os.fdopen(write, "w", buffering=1))
        monkeypatch.setattr(COMMANDS["check"], "main", command)
        try:
            code = main(["check", "resnet18"])
        except SystemExit as stop:
            code = stop.code
        sys.stdout.close()
        if not closed:
            os.close(read)
        err = capsys.readouterr().err
        assert code == expected
        if closed:  # quietly, as Unix tools do: no traceback, no second error at exit
            assert err == ""
        else:  # a worker's or a socket's pipe: a failure, said in one line
            assert err.strip().splitlines() == [
                "noiseadaptor check: error: Broken pipe: a pipe to another process closed"
            ]
