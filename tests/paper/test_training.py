import math

import pytest
import torch

from sgdscope.paper import models
from sgdscope.paper.training import (
    Sampling,
    TrainConfig,
    default_schedule,
    epoch_batches,
    evaluate,
    load_weights,
    lr_at,
    train,
)


def _data(n=240, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 7, 7, generator=g)
    y = (x.flatten(1)[:, :5].argmax(1)).long()  # learnable labels
    return x, y


class _Stop(Exception):
    pass


def _state_equal(a, b):
    return all(
        torch.equal(u, v)
        for u, v in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )


@pytest.mark.parametrize("sampling", ["without", "with"])
def test_resumed_run_equals_uninterrupted_run(tmp_path, sampling):
    xy = _data()
    cfg = TrainConfig(epochs=5, batch_size=32, seed=3, sampling=sampling)
    ref = models.build("tiny-fc", seed=0)
    r_ref = train(ref, xy, cfg, tmp_path / "ref", progress=False, test_data=xy)

    def stop_after_2(epoch, model, opt):
        if epoch == 2:
            raise _Stop

    m = models.build("tiny-fc", seed=0)
    with pytest.raises(_Stop):
        train(m, xy, cfg, tmp_path / "run", progress=False, on_epoch=stop_after_2, test_data=xy)
    fresh = models.build("tiny-fc", seed=7)  # other initial weights: last.pt must override them
    r = train(fresh, xy, cfg, tmp_path / "run", progress=False, test_data=xy)
    assert r.resumed_from == 2
    assert _state_equal(fresh, ref)
    assert [h.train_loss for h in r.history] == [h.train_loss for h in r_ref.history]
    # a finished run called again trains nothing and returns the same history
    again = train(models.build("tiny-fc", seed=0), xy, cfg, tmp_path / "run", progress=False)
    assert again.resumed_from == 5 and len(again.history) == 5


def test_checkpoints_at_20_40_100_percent_hold_those_weights(tmp_path):
    xy = _data()
    cfg = TrainConfig(epochs=10, batch_size=64)
    seen = {}

    def grab(epoch, model, opt):
        seen[epoch] = {k: v.clone() for k, v in model.state_dict().items()}

    r = train(models.build("tiny-fc", seed=0), xy, cfg, tmp_path, progress=False, on_epoch=grab)
    assert sorted(r.checkpoints) == [2, 4, 10]
    for epoch, path in r.checkpoints.items():
        m = models.build("tiny-fc", seed=1)
        meta = load_weights(m, path)
        assert meta["epoch"] == epoch
        assert all(torch.equal(m.state_dict()[k], v) for k, v in seen[epoch].items())


def test_training_learns_and_evaluate_matches_manual_count(tmp_path):
    xy = _data(480)
    cfg = TrainConfig(epochs=8, batch_size=32, lr=0.1)
    model = models.build("tiny-fc", seed=0)
    before = evaluate(model, xy)
    r = train(model, xy, cfg, tmp_path, progress=False, test_data=xy)
    loss, err = evaluate(model, xy)
    assert loss < before[0] and err < 0.5
    model.eval()
    with torch.no_grad():
        out = model(xy[0])
    assert err == pytest.approx(float((out.argmax(1) != xy[1]).float().mean()))
    assert loss == pytest.approx(float(torch.nn.functional.cross_entropy(out, xy[1])), rel=1e-5)
    assert r.final.test_error == pytest.approx(err)


def test_momentum_sgd_step_matches_heavy_ball_by_hand(tmp_path):
    # one epoch of one full batch with plain SGD: w1 = w0 - lr * grad(w0)
    x = torch.randn(16, 1, 7, 7)
    y = torch.randint(0, 5, (16,))
    model = models.build("tiny-fc", seed=0).eval()  # BN in eval for a deterministic gradient
    w0 = [p.detach().clone() for p in model.parameters()]
    loss = torch.nn.functional.cross_entropy(model.train()(x), y)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    cfg = TrainConfig(epochs=1, batch_size=16, lr=0.05, momentum=0.0, schedule=((1, 0.05),))
    train(model, (x, y), cfg, tmp_path, progress=False)
    for p, p0, g in zip(model.parameters(), w0, grads, strict=True):
        torch.testing.assert_close(p.detach(), p0 - 0.05 * g, rtol=1e-5, atol=1e-6)


def test_schedule_and_batches():
    assert default_schedule(40, 0.1) == ((20, 0.1), (30, 0.01), (40, 0.001))
    sched = ((2, 1.0), (5, 0.5))
    assert [lr_at(sched, e) for e in range(7)] == [1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.5]
    cfg = TrainConfig(epochs=3, batch_size=32, seed=1)
    b = epoch_batches(100, cfg, 0)
    assert len(b) == math.ceil(100 / 32)
    assert sorted(torch.cat(b).tolist()) == list(range(100))  # without replacement: a permutation
    assert all(torch.equal(u, v) for u, v in zip(b, epoch_batches(100, cfg, 0), strict=True))
    assert not torch.equal(b[0], epoch_batches(100, cfg, 1)[0])
    w = epoch_batches(100, TrainConfig(batch_size=32, sampling=Sampling.WITH), 0)
    assert len(w) == 4 and all(len(i) == 32 for i in w)


def test_resume_with_other_settings_is_refused(tmp_path):
    xy = _data()
    train(models.build("tiny-fc", seed=0), xy, TrainConfig(epochs=2), tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"other settings \(lr, schedule differ\).*resume=False"):
        train(models.build("tiny-fc"), xy, TrainConfig(epochs=2, lr=0.5), tmp_path, progress=False)
    r = train(
        models.build("tiny-fc"), xy, TrainConfig(epochs=2, lr=0.5), tmp_path,
        progress=False, resume=False,
    )  # fmt: skip
    assert r.resumed_from == 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"epochs": 0}, r"'epochs' parameter of TrainConfig must be an int in \[1, inf\]"),
        ({"lr": 0.0}, r"'lr' parameter of TrainConfig"),
        ({"momentum": 1.0}, r"'momentum' parameter of TrainConfig"),
        ({"sampling": "sometimes"}, r"'sampling' parameter of TrainConfig"),
        ({"checkpoint_at": (0.0, 1.0)}, r"'checkpoint_at' parameter .*\(0.2, 0.4, 1.0\)"),
        ({"schedule": ((10, -1.0),)}, r"'schedule' parameter of TrainConfig"),
    ],
)
def test_bad_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


def test_bad_data_and_checkpoint(tmp_path):
    with pytest.raises(
        ValueError, match=r"'train_data' parameter .* pair \(inputs, int64 targets\)"
    ):
        train(models.build("tiny-fc"), (torch.zeros(3, 49),), TrainConfig(), tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_weights(models.build("tiny-fc"), tmp_path / "nope.pt")
    xy = _data()
    r = train(models.build("tiny-fc", seed=0), xy, TrainConfig(epochs=1), tmp_path, progress=False)
    with pytest.raises(ValueError, match="does not hold weights of this network"):
        load_weights(models.build("small-fc"), r.checkpoints[1])


def test_resume_on_other_data_is_refused(tmp_path):
    xy = _data()
    cfg = TrainConfig(epochs=1)
    train(models.build("tiny-fc"), xy, cfg, tmp_path, progress=False, data_tag="MNIST 7x7 area")
    with pytest.raises(ValueError, match=r"other settings \(data differ\)"):
        train(models.build("tiny-fc"), xy, cfg, tmp_path, progress=False, data_tag="authors")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_training_on_cuda_follows_the_cpu_run(tmp_path):
    # Same batches (the order is drawn on the CPU), same arithmetic up to float32 round-off.
    xy = _data()
    cfg = TrainConfig(epochs=2, batch_size=32, seed=1)
    cpu, gpu = models.build("tiny-fc", seed=0), models.build("tiny-fc", seed=0)
    r_cpu = train(cpu, xy, cfg, tmp_path / "cpu", progress=False)
    r_gpu = train(gpu, xy, cfg, tmp_path / "gpu", progress=False, device="cuda")
    assert next(gpu.parameters()).is_cuda
    for a, b in zip(cpu.state_dict().values(), gpu.state_dict().values(), strict=True):
        torch.testing.assert_close(b.cpu(), a, rtol=1e-4, atol=1e-5)
    assert r_gpu.history[-1].train_loss == pytest.approx(r_cpu.history[-1].train_loss, rel=1e-4)
