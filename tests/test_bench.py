import json

import pytest

from cifar_lab.kit import bench


@pytest.mark.slow
def test_quick_benchmark_writes_the_promised_numbers(tmp_path):
    out = tmp_path / "bench.json"
    assert bench.main(["--quick", "--data-dir", str(tmp_path / "no_data_here"), "--models", "mlp,cnn",
                       "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["data"] == "synthetic set"
    assert result["pipeline_speedup"] > 0 and result["matmul_peak_flops"] > 0
    assert set(result["train_speedup"]) == set(result["peak_fraction"]) == {"mlp", "cnn"}
    assert all(v > 0 for v in result["peak_fraction"].values())
    assert result["flops_per_image"]["cnn"] > result["flops_per_image"]["mlp"]


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
