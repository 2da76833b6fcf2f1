"""Remote backends: the same `EngineAPI` served by someone else's server over HTTP.

For users who outgrow one machine: vLLM, SGLang and llama.cpp's server (OpenAI
`/v1/completions`), TGI (`/generate_stream`), or another loopcoder engine's HTTP API
(OpenAI-compatible). Front ends build their prompts as token ids with a local copy of
the served model's tokenizer, exactly as for the local engine:

- `OpenAIBackend` sends the ids themselves as the prompt (vLLM, SGLang, llama.cpp's
  server and loopcoder accept a list of token ids), so the prompt is the one the front
  end built, token for token; a server that refuses ids (llama-cpp-python's) gets their
  text from then on;
- `TGIBackend` sends their text (TGI takes text only).

What a remote server cannot do, and what we do instead:
- warm documents: the server's own prefix caching keeps a document's K/V (vLLM and
  SGLang by default, llama.cpp's `cache_prompt`); `prefill` sends a one-token request
  to warm it, `close` has nothing to free;
- token healing: the healed text is put back at the end of the prompt;
- `stop_when` (the end of the cursor's block) is checked here on the streamed text,
  and the stream is closed when it fires, which stops generation on the server;
- cancellation closes the connection the same way;
- a JSON schema is sent as OpenAI's `response_format` (vLLM, SGLang) and as
  llama.cpp's `json_schema`; the answer is checked against the schema here, and a
  server that ignored it gets ConstrainedDecodingError.

The package: `base` (the request and the streamed answer every backend shares), `stream`
(the HTTP: server-sent events, errors, the schema check), `openai` and `tgi`.
"""

from .base import RemoteBackend
from .openai import OpenAIBackend
from .tgi import TGIBackend

__all__ = ["OpenAIBackend", "RemoteBackend", "TGIBackend"]
