"""Damaged, foreign and unwritable checkpoints: train() and load_weights() refuse them by name,
before any epoch is spent (D4, D11)."""

import os
import zipfile

import pytest
import torch

from sgdscope._checkpoint import CheckpointError, atomic_save, load_checkpoint
from sgdscope.paper import models
from sgdscope.paper.training import TrainConfig, load_weights, train


def _data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(64, 1, 7, 7, generator=g), torch.randint(0, 5, (64,), generator=g)


CFG = TrainConfig(epochs=2, batch_size=16, checkpoint_at=(1.0,))


def _trained(tmp_path):
    train(models.build("tiny-fc"), _data(), CFG, tmp_path / "run", progress=False)
    return tmp_path / "run" / "last.pt"


def _flip_inside_a_tensor(path, name="4.weight"):
    good = torch.load(path, weights_only=True)["model"][name].clone()
    raw = bytearray(path.read_bytes())
    i = raw.find(good.numpy().tobytes()[:16])
    assert i > 0
    raw[i + 8] ^= 0x40
    path.write_bytes(bytes(raw))
    return good


def test_train_refuses_to_resume_from_a_last_pt_with_a_bad_crc(tmp_path):
    last = _trained(tmp_path)
    _flip_inside_a_tensor(last)
    assert zipfile.ZipFile(last).testzip() is not None  # the oracle: the zip CRC is wrong
    with pytest.raises(CheckpointError, match=r"last\.pt.*fails its CRC-32.*resume=False"):
        train(models.build("tiny-fc"), _data(), CFG, tmp_path / "run", progress=False)


def test_load_weights_refuses_a_checkpoint_with_a_bad_crc(tmp_path):
    last = _trained(tmp_path)
    epoch = tmp_path / "run" / "epoch_0002.pt"
    assert epoch.is_file()
    _flip_inside_a_tensor(epoch)
    with pytest.raises(ValueError, match=r"epoch_0002\.pt.*CRC-32"):
        load_weights(models.build("tiny-fc"), epoch)
    load_weights(models.build("tiny-fc"), last)  # an intact one still loads


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("half", r"last\.pt.*truncated, damaged"),
        ("tail", r"last\.pt"),
        ("empty", r"last\.pt.*is empty"),
        ("state_dict", r"last\.pt.*not a resume point written by train\(\)"),
        ("list", r"last\.pt.*not a resume point.*list"),
        ("other_net", r"last\.pt.*does not fit this network"),
    ],
)
def test_broken_resume_points_are_named_with_the_remedy(tmp_path, content, match):
    last = _trained(tmp_path)
    good = last.read_bytes()
    if content == "half":
        last.write_bytes(good[: len(good) // 2])
    elif content == "tail":
        last.write_bytes(good[:-10])
    elif content == "empty":
        last.write_bytes(b"")
    elif content == "state_dict":
        torch.save(models.build("tiny-fc").state_dict(), last)
    elif content == "list":
        torch.save([1, 2], last)
    else:
        state = torch.load(last, weights_only=True)
        state["model"] = models.build("small-fc").state_dict()
        torch.save(state, last)
    with pytest.raises(ValueError, match=match) as info:
        train(models.build("tiny-fc"), _data(), CFG, tmp_path / "run", progress=False)
    assert "resume=False" in str(info.value) or "delete" in str(info.value)


def test_a_last_pt_that_is_a_directory_is_refused_before_training(tmp_path):
    (tmp_path / "run" / "last.pt").mkdir(parents=True)
    epochs = []
    with pytest.raises(CheckpointError, match=r"last\.pt.*is a directory"):
        train(
            models.build("tiny-fc"), _data(), CFG, tmp_path / "run", progress=False,
            on_epoch=lambda e, m, o: epochs.append(e),
        )  # fmt: skip
    assert epochs == []  # no epoch trained and lost


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_a_read_only_run_folder_is_refused_before_training(tmp_path):
    (tmp_path / "run").mkdir()
    os.chmod(tmp_path / "run", 0o500)
    try:
        with pytest.raises(CheckpointError, match="cannot write checkpoints"):
            train(models.build("tiny-fc"), _data(), CFG, tmp_path / "run", progress=False)
    finally:
        os.chmod(tmp_path / "run", 0o700)


def test_a_failed_save_leaves_no_temporary_file_and_names_the_path(tmp_path, monkeypatch):
    target = tmp_path / "x.pt"
    atomic_save({"a": 1}, target)

    def full_disk(obj, f, *a, **k):
        with open(f, "wb") as fh:
            fh.write(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 662464")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(CheckpointError, match=r"x\.pt.*disk full"):
        atomic_save({"a": 2}, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.pt"]
    monkeypatch.undo()
    assert load_checkpoint(target) == {"a": 1}


def test_a_crafted_pickle_is_refused_by_name(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("true",))

    torch.save({"settings": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(
        CheckpointError, match=r"evil\.pt.*not a checkpoint that can be loaded safely"
    ):
        load_checkpoint(tmp_path / "evil.pt")


def test_an_unwritable_run_folder_is_found_before_any_batch_is_trained(tmp_path, monkeypatch):
    """As root cannot be denied permission, the folder's refusal is simulated at open()."""
    import builtins

    real_open = builtins.open

    def deny(file, mode="r", *a, **k):
        if "w" in mode and str(file).endswith(".pt.tmp"):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, mode, *a, **k)

    monkeypatch.setattr(builtins, "open", deny)
    model = models.build("tiny-fc")
    batches = []
    model.register_forward_hook(lambda *a: batches.append(1))
    with pytest.raises(CheckpointError, match=r"cannot write checkpoints to .*run.*Permission"):
        train(model, _data(), CFG, tmp_path / "run", progress=False)
    assert batches == []  # nothing trained, so nothing lost
