"""A stand-in for the engine in unit tests of our prompt building and post-processing: it
records every request and answers with canned text (no model is run)."""

from __future__ import annotations

from types import SimpleNamespace

from loopcoder.engine.api import EngineAPI, GenerationResult
from loopcoder.engine.errors import TokenizerError
from loopcoder.engine.sampling import FinishReason


class CharTokenizer:
    """One id per character; no chat template, so prompts take the plain instruction layout."""

    bos_token = ""

    def apply_chat_template(self, messages, **kwargs):
        raise TokenizerError("no chat template")

    def encode(self, text, add_special_tokens=False, parse_special=True):
        return [ord(c) for c in text]

    def decode(self, ids):
        return "".join(chr(i) for i in ids)


class StubEngine(EngineAPI):
    def __init__(self, answers: list[str], finish: FinishReason = FinishReason.STOP):
        self.tokenizer = CharTokenizer()
        self.model_config = SimpleNamespace(max_position_embeddings=1 << 20)
        self.answers = list(answers)
        self.finish = finish
        self.requests: list[SimpleNamespace] = []

    def generate_for(self, key, token_ids, params, on_token=None, cancelled=None, **kwargs):
        self.requests.append(SimpleNamespace(key=key, prompt=self.tokenizer.decode(token_ids), params=params))
        text = self.answers.pop(0)
        return GenerationResult(token_ids=[ord(c) for c in text], text=text, finish_reason=self.finish)
