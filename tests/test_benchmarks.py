import os
import re
import subprocess
import sys

from conftest import FIXTURES, REPO


def test_step_speed_prints_a_row_per_backbone_with_ratios_to_the_base(tmp_path):
    command = [
        sys.executable,
        os.path.join(REPO, "benchmarks", "step_speed.py"),
        "--dataset", "tiny",
        "--models", "LightGCN", "BPR",
        "--variants", "con:align_sample_size=4", "gen:mask_ratio=0.5",
        "--steps", "1",
        "--rounds", "2",
        "--profiles", str(tmp_path / "profiles"),
        "--set", f"data_path={FIXTURES}", "embedding_size=8", "train_batch_size=16",
        "load_col={'inter': ['user_id', 'item_id', 'rating', 'timestamp']}",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ") and "ms/step" not in line]
    assert [row.split("|")[1].strip() for row in rows] == ["LightGCN", "BPR"]
    for row in rows:
        base_ms, *cells = [cell.strip() for cell in row.split("|")[2:-1]]
        assert float(base_ms) > 0.05 and len(cells) == 2
        for cell in cells:
            ms, ratio = re.fullmatch(r"([\d.]+) \(([\d.]+)x\)", cell).groups()
            ms, ratio, base = float(ms), float(ratio), float(base_ms)
            # The table rounds ms to 0.1 and ratios to 0.01.
            assert (ms - 0.05) / (base + 0.05) - 0.005 <= ratio <= (ms + 0.05) / (base - 0.05) + 0.005


def test_step_speed_times_bert4rec_whose_transform_sets_config_keys(tmp_path):
    # BERT4Rec's dataloader transform adds MASK_ITEM_SEQ to the config it is built from; every
    # variant's config needs it, not only the one the data was prepared with.
    command = [
        sys.executable,
        os.path.join(REPO, "benchmarks", "step_speed.py"),
        "--dataset", "tiny", "--models", "BERT4Rec", "--variants", "con", "gen", "--steps", "1", "--rounds", "1",
        "--profiles", str(tmp_path / "profiles"),
        "--set", f"data_path={FIXTURES}", "hidden_size=8", "inner_size=16", "n_heads=2", "train_batch_size=16",
        "load_col={'inter': ['user_id', 'item_id', 'rating', 'timestamp']}",
        "eval_args={'split': {'LS': 'valid_and_test'}, 'order': 'TO', 'mode': 'full'}",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| BERT4Rec")]
    assert len(rows) == 1 and len(rows[0].split("|")[2:-1]) == 3


def test_alignment_cost_times_each_sample_size(tmp_path):
    command = [sys.executable, os.path.join(REPO, "benchmarks", "alignment_cost.py"), "--sample-sizes", "8", "32",
               "--users", "20", "--items", "30", "--batch", "64", "--steps", "2", "--rounds", "2"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line.split("|")[1:-1] for line in result.stdout.splitlines() if re.match(r"\| \d", line)]
    assert [int(size) for size, _ in rows] == [8, 32]
    assert all(float(ms) > 0 for _, ms in rows)


def test_cold_benchmark_table_has_a_row_per_ranker_and_scoring(tmp_path, capsys):
    sys.path.insert(0, os.path.join(REPO, "benchmarks"))
    try:
        import ml100k_cold
    finally:
        sys.path.pop(0)
    metrics = {"recall@20": 0.2, "ndcg@20": 0.1, "warmrecall@20": 0.3, "warmndcg@20": 0.2, "coldrecall@20": 0.01, "coldndcg@20": 0.02}
    runs = [
        {"seed": seed, "variant": variant, "cold_start": cold_start, "metrics": metrics, "train": {"epochs": 7} if variant != "popularity" else None}
        for seed in (1, 2)
        for variant, cold_start in (("popularity", "-"), ("LightGCN", "none"), ("LightGCN", "knn + warm_mean"))
    ]
    runs.append({"seed": 1, "variant": "LightGCN", "cold_start": "timing", "metrics": {"none": 1.0, "knn": 1.02}, "train": None})
    ml100k_cold.print_table(runs, "item")
    lines = capsys.readouterr().out.splitlines()
    rows = [line.split("|")[1:3] for line in lines if line.startswith("| ") and "ranker" not in line and "model" not in line]
    assert [(a.strip(), b.strip()) for a, b in rows[:3]] == [("popularity", "-"), ("LightGCN", "none"), ("LightGCN", "knn + warm_mean")]
    table = [line for line in lines if line.startswith("| ")]
    assert "0.0100 (0.0100 / 0.0100)" in table[1] and "| - |" in table[1] and "| 7 / 7 |" in table[2]
    assert "1.020 (+2.0%)" in lines[-1]


def test_sequential_benchmark_prints_ndcg_by_sequence_length(capsys):
    sys.path.insert(0, os.path.join(REPO, "benchmarks"))
    try:
        import ml100k_sequential
    finally:
        sys.path.pop(0)
    keys = ml100k_sequential.group_keys([30, 60])
    assert keys[:3] == ["historyndcg[1-30]@10", "historyndcg[31-60]@10", "historyndcg[61+]@10"]

    def run(seed, scale):
        metrics = {m: 0.1 * scale for m in ml100k_sequential.METRICS + ["valid ndcg@10"]}
        metrics.update({key: (i + 1) / 10 * scale for i, key in enumerate(keys)})
        return metrics, 1.0, 3, seed
    ml100k_sequential.print_tables({"GRU4Rec": [run(1, 1), run(2, 1)], "GRU4Rec_RLM:gen": [run(1, 2), run(2, 2)]}, "test")
    lines = capsys.readouterr().out.splitlines()
    start = lines.index("| variant | 1-30 | 31-60 | 61+ |")
    assert lines[start + 2] == "| GRU4Rec | 0.1000 ± 0.0000 | 0.2000 ± 0.0000 | 0.3000 ± 0.0000 |"
    assert lines[start + 3] == "| GRU4Rec_RLM:gen | 0.2000 ± 0.0000 | 0.4000 ± 0.0000 | 0.6000 ± 0.0000 |"


def test_llm_server_benchmark_prints_a_row_per_concurrency(tmp_path):
    # Against the fake server (tests/openai_server.py, answering like a small model: the summary
    # under another key, in a code fence); the real servers run in the benchmark itself.
    command = [sys.executable, os.path.join(REPO, "benchmarks", "llm_server.py"), "--servers", "fake", "--items", "5",
               "--concurrency", "1", "3", "--log-dir", str(tmp_path)]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [[cell.strip() for cell in line.split("|")[1:-1]] for line in result.stdout.splitlines() if line.startswith("| fake")]
    assert [row[1] for row in rows] == ["1", "3"]
    for _, _, seconds, rate, tokens, parsed, share, failures in rows:
        seconds, rate = float(seconds), float(rate)  # seconds rounded to 0.1, profiles/s to 0.001
        assert 5 / (seconds + 0.05) - 0.001 <= rate and (seconds < 0.05 or rate <= 5 / (seconds - 0.05) + 0.001)
        assert float(tokens) > 0 and parsed == "5/5" and share == "100%" and failures == "-"
