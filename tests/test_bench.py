import json

from cifar_lab import bench


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
