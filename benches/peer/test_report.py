"""Unit tests of the harness's own parsing and interpolation (run by .ci/run)."""
import json
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
import report  # noqa: E402


class ReportTest(unittest.TestCase):
    def test_interpolation_and_range(self):
        rows = [{"recall": 0.80, "qps": 1000.0}, {"recall": 0.90, "qps": 800.0}, {"recall": 1.0, "qps": 200.0}]
        self.assertAlmostEqual(report.interpolate(rows, 0.85, "qps"), 900.0)
        self.assertAlmostEqual(report.interpolate(rows, 0.95, "qps"), 500.0)
        self.assertIsNone(report.interpolate(rows, 0.5, "qps"))

    def test_load_and_ratios(self):
        with tempfile.TemporaryDirectory() as d:
            build = {"build_wall_s": 50.0, "build_peak_rss_bytes": 100, "index_bytes": 10}
            json.dump(build, open(os.path.join(d, "ours_build.json"), "w"))
            ours = {"params": {"cache_nodes": 0}, "rows": [
                {"threads": 1, "L": l, "recall": r, "qps": q, "mean_us": 1e6 / q, "p99_us": 2e6 / q, "sector_reads": s}
                for l, r, q, s in ((20, 0.88, 1200.0, 30.0), (40, 0.96, 900.0, 45.0), (100, 0.99, 500.0, 95.0))]}
            json.dump(ours, open(os.path.join(d, "ours_eval_c0.json"), "w"))
            json.dump({"build_wall_s": 100.0, "build_peak_rss_bytes": 200, "index_bytes": 20}, open(os.path.join(d, "cpp_build.json"), "w"))
            peer = {"rows": [{"threads": 1, "L": l, "cache_nodes": 0, "recall": r, "qps": q, "mean_us": 1e6 / q, "sector_reads": s}
                             for l, r, q, s in ((20, 0.86, 1000.0, 32.0), (40, 0.94, 700.0, 50.0), (100, 0.99, 450.0, 108.0))]}
            json.dump(peer, open(os.path.join(d, "cpp_search.json"), "w"))
            res = report.load(d)
            self.assertEqual(set(res), {"ours", "cpp"})
            rat = report.ratios(res, 1, 0)
            e = rat["cpp"]["0.95"]
            self.assertAlmostEqual(e["qps"]["ours"], 937.5)
            self.assertAlmostEqual(e["qps"]["peer"], 650.0)
            self.assertAlmostEqual(e["qps"]["ratio"], 937.5 / 650.0)
            self.assertAlmostEqual(rat["cpp"]["build"]["build_wall_s"]["ratio"], 0.5)
            self.assertAlmostEqual(rat["cpp"]["0.90"]["qps"]["ours"], 1125.0)
            self.assertAlmostEqual(rat["cpp"]["0.90"]["qps"]["peer"], 850.0)
            self.assertIsNone(report.ratios(res, 2, 0)["cpp"]["0.95"]["qps"]["ratio"])

    def test_repeats_give_the_median_ratio_and_its_spread(self):
        with tempfile.TemporaryDirectory() as d:
            build = {"build_wall_s": 50.0, "build_peak_rss_bytes": 100, "index_bytes": 10}
            json.dump(build, open(os.path.join(d, "ours_build.json"), "w"))
            json.dump(build, open(os.path.join(d, "rust_build.json"), "w"))
            for rep, (oq, pq) in enumerate(((1000.0, 500.0), (1200.0, 400.0), (900.0, 600.0)), start=1):
                ours = {"params": {"cache_nodes": 0}, "rows": [
                    {"threads": 2, "L": l, "recall": r, "qps": oq * f, "mean_us": 100.0, "p99_us": 300.0, "sector_reads": 40.0}
                    for l, r, f in ((20, 0.90, 1.0), (50, 0.99, 0.5))]}
                json.dump(ours, open(os.path.join(d, f"ours_eval_c0_r{rep}.json"), "w"))
                peer = {"rows": [{"threads": 2, "L": l, "cache_nodes": 0, "recall": r, "qps": pq * f, "mean_us": 200.0,
                                  "p99_us": 1000.0, "sector_reads": 60.0} for l, r, f in ((20, 0.90, 1.0), (50, 0.99, 0.5))]}
                json.dump(peer, open(os.path.join(d, f"rust_search_r{rep}.json"), "w"))
            res = report.load(d)
            e = report.ratios(res, 2, 0)["rust"]["0.90"]
            # per-repeat QPS ratios 2.0, 3.0, 1.5: median 2.0, spread 1.5–3.0
            self.assertAlmostEqual(e["qps"]["ratio"], 2.0)
            self.assertAlmostEqual(e["qps"]["ratio_min"], 1.5)
            self.assertAlmostEqual(e["qps"]["ratio_max"], 3.0)
            self.assertEqual(e["qps"]["repeats"], 3)
            self.assertAlmostEqual(e["qps"]["ours"], 1000.0)
            self.assertAlmostEqual(e["p99_us"]["ratio"], 0.3)
            self.assertAlmostEqual(e["sector_reads"]["ratio"], 40.0 / 60.0)


if __name__ == "__main__":
    unittest.main()
