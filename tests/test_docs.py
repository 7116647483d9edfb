"""What the docs tell people to run exists: every config, spec and script path named in the
README and docs/, and every `vggnet VERB` in their code blocks is a verb the CLI has."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "BENCHMARKS.md", *sorted((ROOT / "docs").glob("*.md"))]
PATH = re.compile(r"\b((?:configs|benchmarks)/[\w./-]+\.(?:yaml|py))")
BLOCK = re.compile(r"```[a-z]*\n(.*?)```", re.S)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_config_and_script_the_docs_name_exists(doc):
    missing = sorted({m for m in PATH.findall(doc.read_text()) if not (ROOT / m).exists()})
    assert not missing, f"{doc.name} names files that do not exist: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_verb_in_the_docs_code_blocks_exists(doc):
    from vggnet.cli import VERBS

    used = {m for block in BLOCK.findall(doc.read_text()) for m in re.findall(r"(?:^|\s|\$ )vggnet (\w+)", block)}
    assert used <= set(VERBS), f"{doc.name} uses verbs the CLI lacks: {sorted(used - set(VERBS))}"
