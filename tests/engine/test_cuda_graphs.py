"""CUDA graphs for decode steps and short single-document prefills (engine/cuda_graphs.py).

On CPU: which steps fit a graph and how a step's rows are packed into the graph's static
buffers (padding rows in the scratch block, empty attention tiles). On a GPU: decoding and
re-prefilling through the graphs gives the tokens eager steps give, for dense and Loop
models, ragged batches and edited documents.
"""

import pytest
import torch

from loopcoder.engine.cuda_graphs import StepGraphs, cuda_graphs_blocker
from loopcoder.engine.engine import Engine, EngineConfig
from loopcoder.engine.kv_cache import KVCache
from loopcoder.engine.model_runner import StepInput
from loopcoder.engine.sampling import SamplingParams
from loopcoder.kernels.attention import AttentionMetadata

from .helpers import tiny_engine
from .test_scheduler import prompts, submit_all, work

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def cpu_graphs(max_context=40, block_size=4, scratch=9):
    engine = tiny_engine("llama", block_size=block_size)
    kv = KVCache(engine.model_config, scratch + 1, block_size, torch.float32, "cpu")
    return StepGraphs(engine.model, kv, scratch_block=scratch, max_context=max_context, batch_sizes=(1, 2, 4))


def test_which_steps_fit_a_graph():
    graphs = cpu_graphs(max_context=40)
    assert graphs.fits([StepInput([0, 1], 5, [3])] * 4)  # decode rows: the graph of 4
    assert not graphs.fits([StepInput([0, 1], 5, [3])] * 5)  # more rows than the largest graph
    assert graphs._kind([StepInput([0, 1], 5, [3, 4])]) == ("extend", 16)  # one document's 2 new tokens
    assert not graphs.fits([StepInput([0, 1], 5, [3, 4]), StepInput([2], 0, [1])])  # two documents, one a prefill
    assert not graphs.fits([StepInput(list(range(10)), 30, list(range(11)))])  # runs past max_context
    assert not graphs.fits([StepInput(list(range(11)), 40, [3])])  # position past max_context
    assert graphs.fits([StepInput(list(range(10)), 39, [3])])
    wide = StepGraphs(graphs.model, graphs.kv, 9, max_context=4000)
    assert wide._kind([StepInput(list(range(200)), 0, list(range(257)))]) == ("extend", 320)
    assert not wide.fits([StepInput(list(range(200)), 0, list(range(513)))])  # a long prompt's chunk: eager


def test_an_extend_step_is_packed_with_empty_tiles_past_its_rows():
    graphs = cpu_graphs(block_size=4, scratch=9)
    per_tile = graphs.queries_per_tile
    n = per_tile + 3  # one full tile and a part of the next
    step = StepInput([5, 2, 7, 1, 8, 6] + list(range(20, 40)), 6, list(range(100, 100 + n)))
    io, table, tiles, last = graphs.pack_extend(step, 4 * per_tile)
    positions = list(range(6, 6 + n))
    assert io[0].tolist() == list(range(100, 100 + n)) + [0] * (3 * per_tile - 3)
    assert io[1].tolist() == positions + [0] * (3 * per_tile - 3)
    assert io[2, :n].tolist() == [step.block_table[p // 4] * 4 + p % 4 for p in positions]
    assert set(io[2, n:].tolist()) == {9 * 4}  # padding rows write the scratch block only
    assert table.tolist() == [step.block_table[: (6 + n - 1) // 4 + 1]]
    assert tiles.tolist() == [[0, 0, per_tile, 6], [0, per_tile, 3, 6 + per_tile], [0, 2 * per_tile, 0, 0],
                              [0, 3 * per_tile, 0, 0]]
    assert last.tolist() == [n - 1]


def test_rows_are_packed_with_padding_in_the_scratch_block():
    graphs = cpu_graphs(block_size=4, scratch=9)
    batch = [StepInput([5, 2, 7], 9, [11]), StepInput([3], 0, [12]), StepInput([1, 8, 6, 0], 6, [13])]
    io, tables = graphs.pack(batch, 4)
    assert io.tolist() == [
        [11, 12, 13, 0],  # token ids; the padding row feeds token 0
        [9, 0, 6, 0],  # positions
        [7 * 4 + 1, 3 * 4 + 0, 8 * 4 + 2, 9 * 4],  # slot = table[pos // 4] * 4 + pos % 4; padding: scratch
    ]
    # Width: the blocks the furthest row reads (position 9 -> 3 blocks); the rest is scratch.
    assert tables.tolist() == [[5, 2, 7], [3, 9, 9], [1, 8, 9], [9, 9, 9]]


def test_graphs_are_off_on_cpu_and_when_the_reference_is_forced(monkeypatch):
    config = tiny_engine("llama").model_config
    assert "cpu" in cuda_graphs_blocker(config, torch.float32, "cpu")
    assert tiny_engine("llama").stats()["cuda_graphs"] is None
    monkeypatch.setenv("LOOPCODER_CUDA_GRAPHS", "0")
    assert "LOOPCODER_CUDA_GRAPHS=0" in cuda_graphs_blocker(config, torch.float32, "cuda")
    monkeypatch.delenv("LOOPCODER_CUDA_GRAPHS")
    monkeypatch.setenv("LOOPCODER_KERNELS", "torch")
    assert "LOOPCODER_KERNELS=torch" in cuda_graphs_blocker(config, torch.float32, "cuda")


def test_a_graph_step_never_takes_the_reference_attention():
    """The reference reads host lists, which a captured step fills with its bounds: refused, not wrong."""
    from loopcoder.kernels.attention import paged_attention_ref

    meta = AttentionMetadata.build([[0]], [3], [1], 4)
    meta.decode_splits = 4
    cache = torch.zeros(1, 4, 2, 16)
    with pytest.raises(ValueError, match="captured step"):
        paged_attention_ref(torch.zeros(1, 2, 16), cache, cache, meta, 0.25)


def test_nonpositive_graph_batch_sizes_are_refused():
    engine = tiny_engine("llama")
    kv = KVCache(engine.model_config, 4, 4, torch.float32, "cpu")
    with pytest.raises(ValueError, match="positive"):
        StepGraphs(engine.model, kv, 3, 12, batch_sizes=(0, 2))


@pytest.fixture
def exact_matmuls():
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32 = previous


def gpu_model(model_type, dtype=torch.float32):
    """A tiny model whose heads the Triton decode kernels take (head_dim 16)."""
    return tiny_engine(model_type, head_dim=16).model.to("cuda", dtype)


def decode_all(model, graphs: bool, count=5, **config):
    engine = Engine(model, None, EngineConfig(device="cuda", kv_budget_bytes=1 << 22, block_size=4, prefill_chunk=9,
                                              step_tokens=40, cuda_graphs=graphs, **config))
    params = SamplingParams(max_new_tokens=14, ignore_eos=True)
    works = submit_all(engine, [work(f"d{i}", p, params) for i, p in enumerate(prompts(count))])
    for w in works:
        engine.scheduler.drive(w)
    return engine, [w.result.token_ids for w in works]


@cuda
@pytest.mark.parametrize("model_type", ["llama", "qwen2", "iquestloopcoder", "starcoder2"])
@pytest.mark.parametrize("count", [1, 3, 5])
def test_graph_decode_equals_eager_decode(model_type, count, exact_matmuls):
    """Ragged documents (23..43 tokens, crossing pages) decoding together: the batch grows
    as prompts finish (graphs of 1, 2, 4 and 8 rows, padded), and every token equals eager."""
    model = gpu_model(model_type)
    eager_engine, eager = decode_all(model, graphs=False, count=count)
    graph_engine, graphed = decode_all(model, graphs=True, count=count)
    assert graphed == eager
    stats = graph_engine.stats()
    assert stats["graph_replays"] >= 13 and stats["cuda_graphs"], stats
    assert eager_engine.stats()["cuda_graphs"] is None


@cuda
def test_graph_decode_in_bfloat16_equals_eager():
    model = gpu_model("iquestloopcoder", torch.bfloat16)
    _, eager = decode_all(model, graphs=False, count=4, dtype=torch.bfloat16)
    engine, graphed = decode_all(model, graphs=True, count=4, dtype=torch.bfloat16)
    assert graphed == eager
    assert engine.stats()["graph_replays"] > 0


@cuda
def test_a_warm_document_decodes_through_graphs_after_edits(exact_matmuls):
    """A session edited between generations: the re-prefill after each edit replays an extend
    graph and the decode rows read the session's current pages; tokens equal eager steps'."""
    model = gpu_model("iquestloopcoder")
    results = {}
    for graphs in (False, True):
        engine = Engine(model, None, EngineConfig(device="cuda", kv_budget_bytes=1 << 22, block_size=4,
                                                  cuda_graphs=graphs))
        doc = list(range(1, 60))
        out = []
        for edited in (doc, doc[:20] + [7, 8] + doc[20:], doc[:10]):
            out.append(engine.generate_for("d", edited, SamplingParams(max_new_tokens=9, ignore_eos=True)).token_ids)
        results[graphs] = out
        if graphs:
            assert engine.stats()["cuda_graphs_extend"], engine.stats()
    assert results[True] == results[False]


@cuda
def test_heads_the_decode_kernels_cannot_take_keep_steps_eager():
    model = tiny_engine("llama").model.to("cuda")  # head_dim 8: under the kernels' 16
    engine = Engine(model, None, EngineConfig(device="cuda", kv_budget_bytes=1 << 22, block_size=4))
    assert engine.stats()["cuda_graphs"] is None
    assert "head_dim 8" in cuda_graphs_blocker(model.config, torch.float32, "cuda")


def test_loopcoder_status_reports_graphs_on_gpu_engines_only():
    from loopcoder.lsp.cli.status import _graph_rows

    assert _graph_rows({"device": "cpu", "cuda_graphs": None}) == []
    assert "off" in _graph_rows({"device": "cuda", "cuda_graphs": None})[0][1]
    assert _graph_rows({"device": "cuda:0", "cuda_graphs": [1, 4], "cuda_graphs_extend": [320], "graph_replays": 7}) == [
        ("CUDA graphs", "decode batches 1, 4; prefills of 320 rows; 7 steps replayed")]


def test_a_step_that_cannot_be_captured_runs_eagerly_from_then_on(monkeypatch, caplog):
    """A capture failure (an op or collective the driver refuses) costs the graphs, not the step."""
    params = SamplingParams(max_new_tokens=6, ignore_eos=True)
    plain = tiny_engine("llama", head_dim=16)
    want = plain.generate_for("d", list(range(1, 30)), params).token_ids
    engine = tiny_engine("llama", head_dim=16)
    graphs = StepGraphs(engine.model, engine.kv, scratch_block=0, max_context=64)

    def refuse(*key):
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(graphs, "_capture", refuse)
    engine.runner.graphs = graphs
    assert engine.generate_for("d", list(range(1, 30)), params).token_ids == want
    assert engine.runner.graphs is None and "run eagerly" in caplog.text
