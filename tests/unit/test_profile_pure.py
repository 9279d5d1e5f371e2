"""`orch profile`'s pure parts: the summary table cut from a session's output, what is fetched."""

from __future__ import annotations

from sidecar.profiling.service import FETCHED, ProfileRequest, summary_table

TABLE = "profile: birefnet on cpu (cpu), 1 batches x 2 images at 64 px, 2 lanes\n  throughput  1.0"


def test_the_table_is_the_output_from_the_last_profile_line() -> None:
    output = f"building the engine\nprofile: an earlier mention\nwarm-up done\n{TABLE}\n"
    assert summary_table(output) == TABLE
    assert summary_table(TABLE) == TABLE  # the output is only the table
    assert summary_table("error: no weights for birefnet\n") == ""


def test_py_spy_flag_and_fetched_files() -> None:
    assert ProfileRequest(py_spy=True).py_spy and not ProfileRequest().py_spy
    assert "flame.svg".endswith(FETCHED) and "nsys.nsys-rep".endswith(FETCHED)
    assert not "flame.folded".endswith(FETCHED)
