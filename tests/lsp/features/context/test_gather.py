"""Repository context from a real workspace on disk (gather.py, provider.py): the definitions of the
names near the cursor and the imported files' signatures, never bodies, secrets or ignored files; a
choice that stays put while the user types; and, on the default model, a second keystroke that
reuses the context's warm K/V."""

from pathlib import Path

import pytest

from loopcoder.lsp.features.completion import CompletionOptions, complete
from loopcoder.lsp.features.context.gather import DEFINITION, IMPORT, RecentChunks, candidates
from loopcoder.lsp.features.context.provider import RepoContextProvider
from loopcoder.lsp.features.context.symbols import SymbolTable
from loopcoder.lsp.features.context.workspace import WorkspaceIndex

from .test_repo_prompt import tokenizer

CART = '''"""The shopping cart."""

API_KEY = "sk-not-a-real-key"


def total_price(items, discount=0.0):
    """The sum of the items' prices, less the discount (a fraction from 0 to 1)."""
    return sum(price * count for price, count in items) * (1 - discount)


class Cart:
    """Items and how many of each."""

    def __init__(self):
        self.items = {}

    def add(self, name, price, count=1):
        """Put `count` of `name` at `price` into the cart."""
        self.items[name] = (price, self.items.get(name, (price, 0))[1] + count)
'''
MAIN = 'from shop.cart import Cart, total_price\n\ncart = Cart()\ncart.add("apple", 0.5, 3)\nprice = total_price('


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    (root / "shop").mkdir(parents=True)
    (root / "shop" / "__init__.py").write_text("")
    (root / "shop" / "cart.py").write_text(CART)
    (root / "other.py").write_text("def total_price(x):\n    '''A namesake outside the imports.'''\n    return x\n")
    (root / "main.py").write_text(MAIN)
    (root / ".env").write_text("TOKEN=do-not-read\n")
    (root / "build").mkdir()
    (root / "build" / "gen.py").write_text("def total_price(generated):\n    pass\n")
    (root / ".gitignore").write_text("build/\n")
    return root


def _ranked(root: Path, text: str = MAIN) -> list:
    index = WorkspaceIndex([root])
    index.build()
    table = SymbolTable()
    for path in index.files():
        table.symbols(path, index.text(path))
    return candidates(str(root / "main.py"), text, len(text), index, table)


def test_definitions_near_the_cursor_come_first_and_an_imported_one_beats_a_namesake(workspace):
    ranked = _ranked(workspace)
    first = ranked[0]
    assert first.source == DEFINITION and first.path.endswith("shop/cart.py")
    assert first.text.startswith("def total_price(items, discount=0.0):") and "return sum" not in first.text
    namesake = next(c for c in ranked if c.path.endswith("other.py"))
    assert namesake.score < first.score
    assert not any("build/gen.py" in c.path for c in ranked)  # ignored by .gitignore
    assert all(c.path != str(workspace / "main.py") for c in ranked)  # the document itself is not context


def test_the_imported_files_outline_leaves_out_what_is_already_a_definition(workspace):
    ranked = _ranked(workspace, "from shop.cart import Cart\n\nx = ")
    outline = next(c for c in ranked if c.source == IMPORT)
    assert "def total_price(items, discount=0.0):" in outline.text and "API_KEY" in outline.text
    assert not any(c.source == DEFINITION and c.text.startswith("def total_price") for c in ranked)
    assert "return sum" not in outline.text


def test_the_provider_builds_the_prompt_context_and_keeps_it_while_nothing_new_is_near(workspace):
    tok = tokenizer(["<repo_name>", "<file_sep>", "<fim_prefix>", "<fim_suffix>", "<fim_middle>"])
    provider = RepoContextProvider([workspace], budget_tokens=2000)
    provider.build()
    path = workspace / "main.py"
    ids = provider.context_ids(tok, path, MAIN, len(MAIN))
    text = tok.decode(ids.before)
    assert text.startswith("<repo_name>ws<file_sep>shop/cart.py\n") and text.endswith("<file_sep>main.py\n")
    assert "TOKEN=do-not-read" not in text and "def total_price(generated)" not in text
    typed = MAIN + "cart.items"
    assert provider.context_ids(tok, path, typed, len(typed)) is ids  # the same names: the same ids
    provider.document_edited(workspace / "ship.py", "def shipping(weight):\n    '''Cost by weight.'''\n", 0)
    more = MAIN + "cart.items, shipping("
    grown = provider.context_ids(tok, path, more, len(more))
    sep = tok.token_to_id("<file_sep>")
    kept = len(ids.before) - ids.before[::-1].index(sep) - 1  # up to the current file's <file_sep>
    assert grown.before[:kept] == ids.before[:kept] and len(grown.before) > len(ids.before)  # appended after
    assert "def shipping(weight):" in tok.decode(grown.before)
    assert provider.stats()["documents"] == 1 and provider.stats()["files"] >= 4


def test_no_context_outside_the_workspace_or_with_a_budget_of_zero(workspace, tmp_path):
    tok = tokenizer(["<repo_name>", "<file_sep>"])
    provider = RepoContextProvider([workspace], budget_tokens=0)
    provider.build()
    assert provider.context_ids(tok, workspace / "main.py", MAIN, len(MAIN)) is None
    provider.set_budget(500)
    assert provider.context_ids(tok, tmp_path / "elsewhere.py", MAIN, len(MAIN)) is None
    assert provider.context_ids(tok, workspace / "main.py", MAIN, len(MAIN)) is not None
    with pytest.raises(ValueError, match="0 \\(off\\) or more"):
        RepoContextProvider([workspace], budget_tokens=-1)


def test_recent_chunks_are_newest_first_replaced_when_covered_and_age_out():
    now = [0.0]
    recent = RecentChunks(max_chunks=2, chunk_lines=4, max_age=10, clock=lambda: now[0])
    text = "\n".join(f"line {i}" for i in range(20))
    recent.note("/a.py", text, 2)
    recent.note("/a.py", text, 3)  # mostly the same lines: replaces the first
    recent.note("/b.py", text, 15)
    assert [c.path for c in recent.candidates(exclude="/c.py")] == ["/b.py", "/a.py"]
    assert recent.candidates(exclude="/b.py")[0].path == "/a.py"
    now[0] = 11.0
    assert recent.candidates(exclude="/c.py") == []


@pytest.mark.slow
def test_a_second_keystroke_reuses_the_warm_context(workspace, default_engine):
    """The default model (SmolLM2: <repo_name>/<file_sep>): the context goes in, and typing one more
    character prefills only what changed."""
    provider = RepoContextProvider([workspace], budget_tokens=512)
    provider.build()
    path, key = workspace / "main.py", (workspace / "main.py").as_uri()
    context = provider.context_ids(default_engine.tokenizer, path, MAIN, len(MAIN))
    assert context is not None and len(context) > 20
    first = complete(default_engine, key, MAIN, len(MAIN), CompletionOptions(max_new_tokens=4), context=context)
    assert first.prompt_tokens > len(context)
    typed = MAIN + "c"
    context = provider.context_ids(default_engine.tokenizer, path, typed, len(typed))
    again = complete(default_engine, key, typed, len(typed), CompletionOptions(max_new_tokens=4), context=context)
    assert again.result.usage.cached_tokens >= again.prompt_tokens - 3
