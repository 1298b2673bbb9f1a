"""benchmarks/report.py reads every benchmark id that the suites make (make bench and
make bench-quick end with it): the corpus size may come anywhere in an id."""

from __future__ import annotations

from benchmarks.report import index


def _doc(*names: str) -> dict[str, object]:
    return {"benchmarks": [{"name": name, "stats": {"median": 0.001}, "extra_info": {}} for name in names]}


def test_the_size_is_found_wherever_the_id_puts_it() -> None:
    keys = set(index(_doc("test_cold_build_on_real_packs[fast-import-5k]", "test_reader_latency[50k-during-reloads]",
                          "test_full_build[1k]", "test_health_with_a_pending_push_on_a_long_history",
                          "test_one_record_reload_on_history[5k-h20000-git-fast-forward]")))
    assert keys == {("test_cold_build_on_real_packs", "5k", "fast-import"),
                    ("test_reader_latency", "50k", "during-reloads"), ("test_full_build", "1k", ""),
                    ("test_health_with_a_pending_push_on_a_long_history", "", ""),
                    ("test_one_record_reload_on_history", "5k", "h20000-git-fast-forward")}
