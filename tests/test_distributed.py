"""``sciml_diffusion.distributed``: single-process no-ops, sharding, and 2-rank gloo."""

import textwrap

import pytest
import torch

from sciml_diffusion import distributed
from tests.torchrun import torchrun


@pytest.mark.parametrize("n", [0, 1, 5, 7, 8])
@pytest.mark.parametrize("world", [1, 2, 3, 8])
def test_shards_cover_range_in_order(n, world):
    blocks = [distributed.shard(n, rank, world) for rank in range(world)]
    assert [i for b in blocks for i in b] == list(range(n))
    sizes = [len(b) for b in blocks]
    assert max(sizes) - min(sizes) <= 1


def test_single_process_is_a_no_op(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    with distributed.session("cpu") as ctx:
        assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.is_distributed) == (0, 1, True, False)
        x = torch.arange(6.0).reshape(3, 2)
        assert distributed.gather(x) is x
        assert distributed.broadcast("a") == "a"
        assert distributed.all_reduce_mean(2.5) == 2.5
        distributed.barrier()


def test_bad_environment_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "5")
    with pytest.raises(ValueError, match="RANK=5"):
        distributed.init("cpu")


def test_two_ranks_gather_in_member_order(tmp_path):
    script = tmp_path / "gather.py"
    script.write_text(
        textwrap.dedent("""
        import torch
        from sciml_diffusion import distributed as D
        with D.session("cpu") as ctx:
            block = D.shard(7)
            x = torch.arange(block.start, block.stop, dtype=torch.float32)[:, None]
            gathered = D.gather(x.expand(-1, 3))
            everywhere = D.all_gather(x)
            mean = D.all_reduce_mean(ctx.rank)
            assert everywhere[:, 0].tolist() == list(range(7))
            assert D.broadcast(ctx.rank) == 0
            if ctx.is_main:
                print("members", gathered[:, 0].tolist(), "mean", mean, "world", ctx.world_size)
            else:
                assert gathered is None
    """)
    )
    out = torchrun([str(script)])
    assert "members [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0] mean 0.5 world 2" in out
