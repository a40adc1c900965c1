"""``graphc bench`` hands its options to the benchmark suite's own parser."""

from graphc.cli import main


def test_bench_passes_suite_options_through(capsys):
    assert main(["bench", "--list"]) == 0
    out = capsys.readouterr().out
    assert "graphc" in out and "torch_eager" in out


def test_bench_help_is_graphcs(capsys):
    try:
        main(["bench", "--help"])
    except SystemExit as e:
        assert e.code == 0
    assert "benchmark" in capsys.readouterr().out
