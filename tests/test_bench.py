"""``python -m numbadeconv bench`` runs and prints its table (its timings are never asserted)."""

from numbadeconv import __main__


def test_bench_command_prints_its_table(capsys):
    status = __main__.main(["bench", "--case", "tutorial transpose ->5x5", "--case",
                            "few channels", "--repeat", "1", "--peers", "numpy"])
    out = capsys.readouterr().out
    assert status == 0
    assert "GEMM peak (NumPy BLAS): float32" in out
    for case in ("tutorial transpose ->5x5x3", "few channels 3x3 64x64x8 b4",
                 "filter gradient few channels 3x3 64x64x8 b4"):
        line = next(row for row in out.splitlines() if row.startswith(case))
        assert len(line.split()) >= 6, line  # ours, GFLOP/s, %peak, the peer's time and ratio
