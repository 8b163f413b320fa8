"""Bad-input cases: process.host_memory_budget (docs/memory.md) — malformed values (exit 78) and
budgets no run can fit in, even spilling the caches to disk (exit 75, before computing)."""


def cases(m):
    base = m.tiny_config()

    def with_budget(v):
        return dict(base, process=dict(base["process"], host_memory_budget=v))

    return [
        m.Case("memory_budget_unit_unknown", 78,
               r'process\.host_memory_budget: expected a byte count: .*"8G".*got the string "8X"',
               sets=["process.host_memory_budget=8X"], what="host memory budget with an unknown unit suffix"),
        m.Case("memory_budget_negative", 78, r"process\.host_memory_budget: expected a byte count: .*got -1",
               config=with_budget(-1), what="negative host memory budget"),
        m.Case("memory_budget_fractional_bytes", 78, r"process\.host_memory_budget: expected a byte count: .*got 1\.5",
               config=with_budget(1.5), what="host memory budget of a fractional number of bytes"),
        m.Case("memory_budget_boolean", 78, r"process\.host_memory_budget: expected a byte count: .*got true",
               config=with_budget(True), what="host memory budget given as a boolean"),
        m.Case("memory_budget_empty", 78, r'process\.host_memory_budget: expected a byte count: .*got the string ""',
               sets=["process.host_memory_budget="], what="empty host memory budget"),
        m.Case("memory_budget_below_batch", 75,
               r"unit \d+ \(.*\): streaming its spilled caches needs \d+ bytes per batch of \d+ images, more than "
               r"process\.host_memory_budget 1024 bytes",
               sets=["process.host_memory_budget=1K"],
               what="host memory budget below one calibration batch of a unit's caches: exit 75 before computing"),
        m.Case("memory_spill_over_file_limit", 75,
               r"unit \d+ \(.*\): a \d+-byte cache may have to spill to one file, larger than the file size limit "
               r"\(ulimit -f\) of 65536 bytes",
               sets=["process.host_memory_budget=5M"], limit_fsize=64 * 1024,
               what="caches that must spill, but one spill file would exceed RLIMIT_FSIZE: exit 75 before computing"),
    ]
