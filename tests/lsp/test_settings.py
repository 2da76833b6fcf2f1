"""initializationOptions: applied over the command line's defaults, validated with the key named."""

import pytest

from loopcoder.engine.errors import InvalidRequestError
from loopcoder.lsp.features.settings import ServerSettings


def test_options_override_defaults():
    base = ServerSettings(max_tokens=64, model="/m.gguf")
    assert base.updated(None) is base
    got = base.updated({"maxTokens": 8, "temperature": 1, "model": None, "prewarm": False})
    assert (got.max_tokens, got.temperature, got.model, got.prewarm) == (8, 1.0, None, False)
    got = base.updated({"suffixTokens": 0, "contextTokens": 512, "cache": False, "backend": "local"})
    assert (got.suffix_tokens, got.context_tokens, got.cache, got.backend) == (0, 512, False, "local")
    assert base.updated({"fimTemplate": "<PRE> {prefix} <SUF>{suffix} <MID>"}).fim_template.startswith("<PRE>")


@pytest.mark.parametrize("options, message", [
    ({"maxTokens": "8"}, "initializationOptions.maxTokens must be int"),
    ({"maxTokens": True}, "maxTokens must be int"),
    ({"maxTokens": 0}, "maxTokens must be at least 1"),
    ({"temperature": -1}, "temperature must be 0"),
    ({"quant": "int3"}, "quant must be one of"),
    ({"max_tokens": 8}, "unknown initializationOptions key"),
    ({"backend": "remote"}, "backend must be one of local"),
    ({"suffixTokens": -1}, "suffixTokens must be 0 or more"),
    ({"contextTokens": 0}, "contextTokens must be at least 1"),
    ({"repoContextTokens": -1}, r"repoContextTokens must be 0 \(off\) or more"),
    ({"cache": 1}, "initializationOptions.cache must be bool"),
    ({"fimTemplate": "<PRE>{prefix}<MID>"}, r"fimTemplate .* needs \{prefix\} and \{suffix\} once each"),
    ({"fimTemplate": 3}, "initializationOptions.fimTemplate must be str"),
    ([1], "must be a JSON object"),
])
def test_bad_options_name_the_key(options, message):
    with pytest.raises(InvalidRequestError, match=message):
        ServerSettings().updated(options)
