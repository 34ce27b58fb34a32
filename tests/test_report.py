"""docs/report.md is what make_report.py gives from the records, and answers every question."""
import os
import re

import make_report

QUESTIONS = ['1.1 a)', '1.1 b)', '1.1 c)', '1.1 d)', '1.2', '2.1', '2.2', '3.1', '3.2 a)', '3.2 b)', '3.2 c)',
             '3.2 d)', '4 a)', '4 b)']


def test_report_matches_its_records():
    assert os.path.isfile(make_report.REPORT), 'run python make_report.py'
    assert open(make_report.REPORT).read() == make_report.render(), 'docs/report.md is stale: run python make_report.py'


def test_readme_results_match_the_records():
    assert open(make_report.README).read() == make_report.render_readme(), 'README.md is stale: run python make_report.py'


def test_every_question_has_a_heading():
    headings = [line for line in open(make_report.TEMPLATE) if line.startswith('### Question')]
    for question in QUESTIONS:
        assert any(re.match(rf'### Question {re.escape(question)}( |$)', h) for h in headings), question


def test_placeholders_resolve(tmp_path, monkeypatch):
    (tmp_path / 'run').mkdir()
    (tmp_path / 'run' / 'history.json').write_text('{"summary": {"acc": 0.51234, "steps": [1, 2]}}')
    monkeypatch.setattr(make_report, 'RESULTS', str(tmp_path))
    assert make_report.value('run/history.json:summary.acc:.3f') == '0.512'
    assert make_report.value('run/history.json:summary.steps.1') == '2'
    assert make_report.value('missing.json:x') == make_report.MISSING
