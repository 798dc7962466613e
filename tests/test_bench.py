import json

import pytest

from cifar_lab.kit import bench


@pytest.mark.slow
def test_quick_benchmark_writes_the_promised_numbers(tmp_path):
    out = tmp_path / "bench.json"
    assert bench.main(["--quick", "--data-dir", str(tmp_path / "no_data_here"), "--models", "mlp,cnn,fastnet",
                       "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["data"] == "synthetic set"
    assert result["pipeline_speedup"] > 0 and result["matmul_peak_flops"] > 0
    assert set(result["train_speedup"]) == set(result["peak_fraction"]) == {"mlp", "cnn", "fastnet"}
    assert all(v > 0 for v in result["peak_fraction"].values())
    precision_peak = result["matmul_peak_flops_bf16"] or result["matmul_peak_flops"]  # the peak of the kit's precision
    assert result["peak_fraction_training_precision"]["fastnet"] == pytest.approx(
        result["train"]["fastnet"]["cifar_lab"] * result["flops_per_image"]["fastnet"] / precision_peak)
    assert result["flops_per_image"]["cnn"] > result["flops_per_image"]["mlp"]
    fast = result["fast_recipe_step"]  # FastNet as its recipe steps it, and where a step's time goes
    assert fast["images_per_second"] > 0 and fast["peak_fraction"] == pytest.approx(
        fast["images_per_second"] * result["flops_per_image"]["fastnet"] / fast["peak_flops"])
    if result["device"] == "cpu":  # the profiler's breakdown is taken on CPUs only
        assert fast["time_by_op_kind"]["convolution"] > 0.2 and sum(fast["time_by_op_kind"].values()) == pytest.approx(1)


@pytest.mark.slow
def test_time_to_accuracy_from_the_command_line(tmp_path, capsys):
    import pytest
    out = tmp_path / "bench.json"
    assert bench.main(["--quick", "--data-dir", str(tmp_path / "no_data_here"), "--models", "mlp", "--target", "0.01",
                       "--json", str(out)]) == 0
    reach = json.loads(out.read_text())["time_to_accuracy"]
    assert reach["target"] == 0.01 and reach["cnn"]["reached"] and reach["fast"]["reached"]
    assert "fast recipe: reached 1.0% validation accuracy at epoch 1" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        bench.main(["--quick", "--target", "90"])  # a percentage, not a fraction: refused


@pytest.mark.slow
def test_versus_airbench_trains_both_on_the_same_images_and_reports_their_ratios(tmp_path, fake_root):
    pytest.importorskip("airbench")
    assert bench.main(["--versus", "airbench", "--quick", "--data-dir", str(fake_root), "--seeds", "0",
                       "--precision", "fp32", "--output-dir", str(tmp_path / "out")]) == 0
    result = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [r["implementation"] for r in result["runs"]] == ["airbench94", "cifar_lab fast recipe"]
    assert result["precision"] == "fp32" and result["quick"] is True
    airbench_run, kit_run = result["runs"]
    assert airbench_run["train_images"] == 1_000 and kit_run["train_images"] == 999  # one held out for validation
    assert airbench_run["test_acc"] > 0.3  # it learns on the CPU
    assert result["speed_ratio"] > 0 and 0 < result["accuracy_ratio"]
    assert not list((tmp_path / "out").rglob("*.pt"))  # airbench's data copy lived in a temporary folder


@pytest.mark.slow
def test_an_interrupted_comparison_keeps_the_runs_it_finished(tmp_path, fake_root, monkeypatch):
    pytest.importorskip("airbench")
    from cifar_lab.kit import versus

    def kit_fails(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(versus, "kit_run", kit_fails)
    with pytest.raises(KeyboardInterrupt):
        bench.main(["--versus", "airbench", "--quick", "--data-dir", str(fake_root), "--seeds", "0",
                    "--output-dir", str(tmp_path / "out")])
    result = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [r["implementation"] for r in result["runs"]] == ["airbench94"]  # airbench's run, saved before the kit's
    assert "accuracy_ratio" not in result  # no ratio from one side


def test_the_cpu_shims_restore_everything_they_change():
    import torch
    pytest.importorskip("airbench")
    from cifar_lab.kit import versus
    before = (torch.cuda.Event, torch.Tensor.half, torch.nn.Module.cuda, torch.nn.BatchNorm2d.forward)
    with versus.cpu_shims("fp32"):
        assert torch.zeros(2).half().dtype == torch.float32 and torch.zeros(2).cuda().device.type == "cpu"
    assert (torch.cuda.Event, torch.Tensor.half, torch.nn.Module.cuda, torch.nn.BatchNorm2d.forward) == before


@pytest.mark.slow
def test_an_interrupted_comparison_resumes_with_the_runs_it_finished_kept(tmp_path, fake_root, monkeypatch, capsys):
    pytest.importorskip("airbench")
    from cifar_lab.kit import versus

    def kit_fails(*args, **kwargs):
        raise KeyboardInterrupt
    command = ["--versus", "airbench", "--quick", "--data-dir", str(fake_root), "--seeds", "0", "--precision", "fp32",
               "--output-dir", str(tmp_path / "out")]
    real_kit_run = versus.kit_run
    monkeypatch.setattr(versus, "kit_run", kit_fails)
    with pytest.raises(KeyboardInterrupt):
        bench.main(command)
    first = json.loads((tmp_path / "out" / "results.json").read_text())["runs"][0]
    assert "the same command with --resume trains the others" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # the folder holds an unfinished comparison: refused without --resume
        bench.main(command)
    assert "holds an unfinished comparison (interrupted); continue it with --resume" in capsys.readouterr().err
    monkeypatch.setattr(versus, "kit_run", real_kit_run)
    monkeypatch.setattr(versus, "airbench_run", lambda *a, **k: pytest.fail("airbench's finished run was retrained"))
    assert bench.main(command + ["--resume"]) == 0
    result = json.loads((tmp_path / "out" / "results.json").read_text())
    assert all(r["cpu"] for r in result["runs"])  # each run names its machine: a resumed one may span two
    assert result["runs"][0] == first and [r["implementation"] for r in result["runs"]] == \
        ["airbench94", "cifar_lab fast recipe"] and "accuracy_ratio" in result


@pytest.mark.slow
def test_airbench_learns_under_the_cpus_bf16_autocast_as_in_fp32(tmp_path, fake_root):
    """One autocast around all of train94 must not cache the weights' bf16 copies (it stayed at chance when it did)."""
    pytest.importorskip("airbench")
    from cifar_lab.kit import versus
    versus.write_airbench_data(fake_root, tmp_path, limit=2000)
    accuracy = {p: versus.airbench_run(tmp_path, 0, p, 1, 100)["test_acc"] for p in ("fp32", "bf16")}
    assert accuracy["bf16"] > 0.3 and abs(accuracy["bf16"] - accuracy["fp32"]) < 0.1, accuracy


def test_comparisons_run_in_separate_sessions_pool_into_one_mean_per_implementation(tmp_path):
    """Seeds committed in several folders count together, each once and in pairs; seconds from one CPU only."""
    from cifar_lab.kit.versus import KIT, pooled

    def committed(folder, seed, airbench, kit, cpu, seconds=100.0, precision="bf16", only=None):
        rows = [{"implementation": name, "seed": seed, "test_acc": acc, "seconds": seconds, "flops": 3.6e14,
                 "epochs": 10} for name, acc in (("airbench94", airbench), (KIT, kit)) if only in (None, name)]
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "results.json").write_text(json.dumps(
            {"runs": rows, "precision": precision, "quick": False, "environment": {"cpu": cpu}}))

    committed("versus_airbench", 0, 0.90, 0.91, "AMD EPYC")
    committed("versus_airbench_seed1", 1, 0.92, 0.91, "AMD EPYC")
    committed("versus_airbench_seed2", 2, 0.91, 0.91, "Intel Xeon", seconds=900.0)
    committed("versus_airbench_seed2_again", 2, 0.50, 0.50, "AMD EPYC")  # the same seed again: not counted twice
    committed("versus_airbench_seed3", 3, 0.91, 0.0, "AMD EPYC", only="airbench94")  # interrupted: no pair yet
    committed("versus_airbench_fp32", 4, 0.91, 0.91, "AMD EPYC", precision="fp32")  # another precision
    result = pooled(tmp_path)
    assert result["summary"]["airbench94"]["n"] == 3 and result["summary"][KIT]["n"] == 3  # seeds 0, 1, 2
    assert result["summary"]["airbench94"]["test_acc_mean"] == pytest.approx(0.91)
    assert result["summary"]["airbench94"]["seconds_mean"] == 100.0  # the EPYC's runs only: times compare on one CPU
    assert result["seconds_cpu"] == "AMD EPYC" and result["cpus"] == ["AMD EPYC", "Intel Xeon"]
    assert any("seed 2 counted once" in n for n in result["notes"]) and any("fp32" in n for n in result["notes"])
    assert pooled(tmp_path / "nothing") == {}
