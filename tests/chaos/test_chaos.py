import pytest

from tests.chaos.run import main


@pytest.mark.slow(seconds=55)
@pytest.mark.timeout(300)
def test_short_chaos_run_holds_every_check(capsys: pytest.CaptureFixture[str]) -> None:
    code = main([])
    report = capsys.readouterr().out
    assert code == 0, report
    assert "jobs that ran in two workers at once: 0" in report
