"""Unit tests of the budgeted-build report's log parsing and checks (run by .ci/run)."""
import json
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import budget_report  # noqa: E402

# Lines as the two builds print them (DiskANN Rust 0.49.1 through tracing, with colours).
OURS_BUDGET_LOG = """built /x/ours-budget (10000 × 384 f32, metric l2, R = 64, L = 100, α = 1.2, PQ M = 32)
  total                      12.71 s
  partitions                     8
  RAM estimate of build      76.5 MiB
  peak RSS of build          36.8 MiB
"""
OURS_ONESHOT_LOG = """built /x/ours-oneshot (10000 × 384 f32, metric l2, R = 64, L = 100, α = 1.2, PQ M = 32)
  RAM estimate of build      60.0 MiB
"""
RUST_BUDGET_LOG = (
    "\x1b[2m2026-11-30T17:38:52.300829Z\x1b[0m \x1b[32m INFO\x1b[0m \x1b[2mdiskann_disk::build::builder::core\x1b[0m\x1b[2m:\x1b[0m "
    "Estimated index RAM usage: 0.02015717327594757 GB, index_build_ram_limit=0.004999999888241291 GB\n"
    "2026-11-30T17:38:52.300832Z  INFO diskann_disk::build::builder::core: Insufficient memory budget for index build in one "
    "shot, index_build_ram_limit=0.004999999888241291 GB estimated_index_ram=0.02015717327594757 GB\n"
    "2026-11-30T17:38:52.483541Z  INFO diskann_disk::utils::partition: Partitioned 10000 with replication factor 2 to get "
    "20000 points across 5 shards\n"
    "2026-11-30T17:38:58.0Z  INFO diskann_disk::build::builder::core: Starting merge\n")
RUST_ONESHOT_LOG = ("2026-11-30T17:38:40.054062Z  INFO diskann_disk::build::builder::core: Full index fits in RAM budget, "
                    "should consume at most 0.02015717327594757 GBs, so building in one shot\n")


class BudgetReportTest(unittest.TestCase):
    def test_parse_ours(self):
        b = budget_report.parse_partitions("ours", OURS_BUDGET_LOG)
        self.assertEqual(b["partitions"], 8)
        self.assertAlmostEqual(b["estimate_gib"], 76.5 / 1024)
        # A one-shot build prints no partitions line: it is one partition.
        self.assertEqual(budget_report.parse_partitions("ours", OURS_ONESHOT_LOG)["partitions"], 1)
        # A log without "built" (a failed build) says nothing.
        self.assertIsNone(budget_report.parse_partitions("ours", "Error: out of space\n")["partitions"])

    def test_parse_rust(self):
        b = budget_report.parse_partitions("rust", RUST_BUDGET_LOG)
        self.assertEqual(b["partitions"], 5)
        self.assertAlmostEqual(b["estimate_gib"], 0.02015717327594757)
        self.assertTrue(any("Insufficient memory budget" in e for e in b["evidence"]))
        self.assertTrue(any("across 5 shards" in e for e in b["evidence"]))
        self.assertFalse(any("\x1b" in e for e in b["evidence"]))
        self.assertEqual(budget_report.parse_partitions("rust", RUST_ONESHOT_LOG)["partitions"], 1)

    def test_load_checks_and_markdown(self):
        with tempfile.TemporaryDirectory() as d:
            names = ["ours-oneshot", "ours-budget", "rust-oneshot", "rust-budget"]
            logs = [OURS_ONESHOT_LOG, OURS_BUDGET_LOG, RUST_ONESHOT_LOG, RUST_BUDGET_LOG]
            recalls = [(0.950, 0.985), (0.945, 0.980), (0.949, 0.986), (0.930, 0.984)]
            params = {"data": "/d", "n": 10000, "dim": 384, "R": 64, "build_l": 100, "alpha": 1.2, "pq_bytes": 32,
                      "build_threads": 2, "k": 10, "W": 4, "nq": 1000, "L": [50, 100], "budget_gib": 0.07,
                      "peer_budget_gib": 0.005, "commit": "abc", "date": "today", "machine": "2 vCPU", "builds": names}
            json.dump(params, open(os.path.join(d, "params.json"), "w"))
            for i, (name, log, (r50, r100)) in enumerate(zip(names, logs, recalls)):
                system, mode = name.split("-")
                json.dump({"system": system, "mode": mode, "budget_gib": None if mode == "oneshot" else 0.07,
                           "build_wall_s": 10.0 * (i + 1), "build_peak_rss_bytes": 2**20 * (100 - i), "index_bytes": 2**21},
                          open(os.path.join(d, f"{name}_build.json"), "w"))
                open(os.path.join(d, f"{name}_build.log"), "w").write(log)
                rows = [{"threads": 1, "L": 50, "recall": r50, "qps": 500.0, "sector_reads": 55.0, "p99_us": 3000.0},
                        {"threads": 1, "L": 100, "recall": r100, "qps": 300.0, "sector_reads": 105.0, "p99_us": 5000.0}]
                if system == "ours":
                    json.dump({"params": {"cache_nodes": 0}, "rows": rows}, open(os.path.join(d, f"{name}_eval.json"), "w"))
                else:
                    json.dump({"rows": [dict(r, cache_nodes=0) for r in rows]}, open(os.path.join(d, f"{name}_search.json"), "w"))
            params_back, builds = budget_report.load(d)
            self.assertEqual([b["name"] for b in builds], names)
            chk = budget_report.checks(builds)
            self.assertEqual(chk["ours"]["partitions"], 8)
            self.assertTrue(chk["ours"]["partitioned"])
            self.assertAlmostEqual(chk["ours"]["recall_delta"][50], -0.005)
            self.assertTrue(chk["ours"]["recall_within_tolerance"])
            self.assertAlmostEqual(chk["ours"]["build_wall_ratio"], 2.0)
            self.assertTrue(chk["rust"]["partitioned"])
            self.assertAlmostEqual(chk["rust"]["recall_delta"][50], -0.019)
            self.assertFalse(chk["rust"]["recall_within_tolerance"])
            md = budget_report.markdown(params_back, builds, chk)
            self.assertIn("| ssdann budgeted | 0.07 | 8 | 20.0 | 99.0 | 2.0 | 0.9450 | 55.0 | 500 |", md)
            self.assertIn("OUTSIDE TOLERANCE", md)
            budget_report.main(d)
            doc = json.load(open(os.path.join(d, "budget_report.json")))
            self.assertEqual(doc["checks"]["rust"]["partitions"], 5)
            self.assertTrue(os.path.exists(os.path.join(d, "budget_report.md")))


if __name__ == "__main__":
    unittest.main()
