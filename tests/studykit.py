"""Helpers of the study's tests (tests/study): fake cell results, a study run on them, and the check that every
number of a report traces back to its results.json."""
import json

from armvision.experiments import study
from armvision.experiments.study import StudyPlan, run_study

NO_OPTION = lambda cell: None  # noqa: E731  (every option "exists" in the fake runs)
SIZES = {"fit": 3600, "selection": 400, "test": 1000, "labelled: 0.1": 360, "labelled: 1": 3600}


def fake_result(cell):
    """Deterministic fake results: ARM-pretrained > scratch, seeds add a little noise. Pretraining compute: ARM 3 CPU
    s, MAE 2 (x its length); the wall-clock is ten times that (a loaded machine), and is never the measure."""
    if cell.kind == "pretrain":
        cpu = (2.0 if cell.variant.get("method") == "mae" else 3.0) * cell.variant.get("length", 1.0) + 0.1 * cell.seed
        return {"loss": 1.0 + cell.seed, "cpu_seconds": cpu, "seconds": 10 * cpu, "images": 640, "steps": 10}
    if cell.kind == "probe":
        return {"knn": 70.0 + cell.seed, "linear": 75.0 + 0.5 * cell.seed, "seconds": 1.0, "cpu_seconds": 1.0}
    base = 50.0 if not cell.variant else 60.0
    return {"top1": base + cell.seed * 0.7 + (cell.seed % 2) * 1.3, "top5": 99.0, "seconds": 1.0, "cpu_seconds": 1.0}


def study_doc(tmp_path, plan=None):
    run_study(plan or StudyPlan(), tmp_path, "armvision study --jobs 2")
    return json.loads((tmp_path / "results.json").read_text())


def number_tokens(text):
    import re

    return re.findall(r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?:e[-+]\d+)?", text)


def traceable(doc):
    """Every number of the document, and of what the report code computes from it, in the forms it prints."""
    import re
    import statistics

    from armvision.experiments.study import report

    nums, strings = set(), set()

    def walk(x):
        if isinstance(x, dict):
            for k, v in x.items():
                walk(k)
                walk(v)
        elif isinstance(x, (list, tuple)):
            for v in x:
                walk(v)
        elif isinstance(x, bool) or x is None:
            pass
        elif isinstance(x, (int, float)):
            nums.add(float(x))
        else:
            strings.update(re.findall(r"\d+(?:\.\d+)?", str(x)))

    walk(doc)
    for r in study.derive(doc):
        for xs in (r["a"], r["b"]):
            if xs:
                nums.update([statistics.mean(xs), len(xs)] + ([statistics.stdev(xs)] if len(xs) > 1 else []))
        if r["test"]:
            nums.update(v for v in vars(r["test"]).values() if isinstance(v, float))
        nums.update(x for x in (r["p"], r["p_adj"], r["detectable"]) if x is not None)
        walk(r["label"])
    for r in report.efficiency_rows(doc) + report.probe_rows(doc) + report.compute_rows(doc):
        walk(r)
        for xs in (r.get("top1"), r.get("knn"), r.get("linear")):
            if xs:
                nums.update([statistics.mean(xs), len(xs)] + ([statistics.stdev(xs)] if len(xs) > 1 else []))
    nums.update(report.summary(doc).values())
    nums.update(report.geometry(doc).values())
    forms = set(strings)
    for x in nums:
        for fmt in ("{:.0f}", "{:.1f}", "{:.2f}", "{:.3f}", "{:.4f}", "{:g}", "{:.1e}", "{:+.2f}"):
            forms.add(fmt.format(x).lstrip("+-"))  # tokens are compared unsigned
        forms.update({f"{x:.0%}".rstrip("%"), f"{x * 100:g}"})
    return forms
