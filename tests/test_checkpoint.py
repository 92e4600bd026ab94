"""Checkpoints: atomic writes, the newest kept, half-written ones ignored."""
import torch

from checkpoint import latest_checkpoint, list_checkpoints, save_checkpoint
from model import GPT
from test_model import tiny_gpt



def test_checkpoint_round_trip_is_atomic_and_keeps_the_newest(tmp_path):
    model = tiny_gpt()
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, model, {"step": step}, {"run": {"seed": 0}}, keep=2)
    assert [p.split("_")[-1] for p in list_checkpoints(tmp_path)] == ["2", "3"]
    assert latest_checkpoint(tmp_path).endswith("ckpt_3")
    assert not [n for n in (tmp_path).iterdir() if ".tmp" in n.name]
    restored = GPT.from_weights(latest_checkpoint(tmp_path))
    for (name, a), (_, b) in zip(model.state_dict().items(), restored.state_dict().items()):
        assert torch.equal(a, b), name
    assert restored.lm_head.weight is restored.tok_emb.weight  # tying survives the round trip
    assert torch.load(f"{latest_checkpoint(tmp_path)}/trainer.pt")["step"] == 3


def test_a_half_written_checkpoint_is_ignored(tmp_path):
    model = tiny_gpt()
    save_checkpoint(tmp_path, 1, model, {"step": 1}, {})
    (tmp_path / "ckpt_2.tmp-123").mkdir()  # a crash while writing step 2
    assert latest_checkpoint(tmp_path).endswith("ckpt_1")
    assert [p.split("_")[-1] for p in list_checkpoints(tmp_path)] == ["1"]
