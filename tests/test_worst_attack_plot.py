"""benchmarks/worst_attack_plot.py: the worst attack per model and its blocking score."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "worst_attack_plot.py"


@pytest.fixture(scope="module")
def plot():
    spec = importlib.util.spec_from_file_location("worst_attack_plot", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _results(folder: Path, rows: dict[tuple[str, int], float]) -> Path:
    folder.mkdir()
    summary = [{"model_id": model, "task": "bad", "n": n, "test_accuracy_mean": accuracy,
                "test_accuracy_std": 0.01} for (model, n), accuracy in rows.items()]
    summary.append({"model_id": "blocked", "task": "good", "n": 100, "test_accuracy_mean": 0.99,
                    "test_accuracy_std": 0.0})
    path = folder / "results.json"
    path.write_text(json.dumps({"summary": summary}))
    return path


@pytest.fixture()
def two_evaluations(tmp_path):
    probe = _results(tmp_path / "probe", {("blocked", 100): 0.55, ("pretrained", 100): 0.75,
                                          ("random", 100): 0.55, ("finetuned", 100): 0.61})
    full = _results(tmp_path / "full", {("blocked", 100): 0.65, ("pretrained", 100): 0.86,
                                        ("random", 100): 0.60})
    return [probe, full]


def test_the_worst_attack_is_the_highest_accuracy_and_the_score_the_lowest(plot,
                                                                            two_evaluations):
    evaluations = plot.summaries(two_evaluations, "bad")
    worst = plot.worst_attacks(evaluations)
    assert worst[("blocked", 100)]["test_accuracy_mean"] == 0.65
    assert worst[("blocked", 100)]["source"] == "full"
    assert worst[("pretrained", 100)]["source"] == "full"
    scores = plot.worst_scores(evaluations, "bad")
    # each evaluation against its own baselines: probe 1.0, full (0.86 - 0.65) / 0.26
    assert scores[("blocked", 100)] == (pytest.approx(0.21 / 0.26), "full")
    assert scores[("finetuned", 100)] == (pytest.approx((0.75 - 0.61) / 0.20), "probe")
    assert ("pretrained", 100) not in scores


def test_the_plot_is_written_and_unknown_models_are_refused(plot, two_evaluations, tmp_path,
                                                            monkeypatch, capsys):
    out = tmp_path / "plot.png"
    monkeypatch.setattr(sys, "argv", ["plot", *map(str, two_evaluations), "--out", str(out)])
    plot.main()
    assert out.read_bytes().startswith(b"\x89PNG")
    assert "| blocked | 100 | 0.650 ± 0.010 | full | 0.808 | full |" in capsys.readouterr().out
    monkeypatch.setattr(sys, "argv", ["plot", *map(str, two_evaluations), "--models",
                                      "blocked,pretrained,random", "--out", str(out)])
    plot.main()
    printed = capsys.readouterr().out
    assert "| blocked | 100 |" in printed and "finetuned" not in printed
    monkeypatch.setattr(sys, "argv", ["plot", *map(str, two_evaluations), "--models",
                                      "blocked,ac", "--out", str(out)])
    with pytest.raises(SystemExit, match="no 'bad' cells for ac"):
        plot.main()
