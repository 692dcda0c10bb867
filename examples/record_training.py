"""Record a real training loop with sgdscope, then read the trajectory back.

Run: ``python examples/record_training.py [OUT_DIR]``. It trains tiny-fc (49→16→BN1d→ReLU→5, the
917-parameter network of Chaudhari & Soatto §IV-B) on synthetic 7×7 inputs with SGD (lr 0.1,
momentum 0.9, batch 128, the paper's settings), records every step, and checks that the recorded
trajectory equals the weights the model ended with.
"""

# %% imports and data (synthetic: nothing is downloaded)
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

import sgdscope as sg

torch.manual_seed(0)
x = torch.randn(2048, 49)
y = (x[:, :5].argmax(dim=1) + (x[:, 5] > 1).long()) % 5  # a learnable 5-class rule
loader = torch.utils.data.DataLoader(
    torch.utils.data.TensorDataset(x, y), batch_size=128, shuffle=True
)
model = torch.nn.Sequential(
    torch.nn.Linear(49, 16), torch.nn.BatchNorm1d(16), torch.nn.ReLU(), torch.nn.Linear(16, 5)
)
out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp()) / "tiny-fc.sgdtraj"

# %% the ten lines: a training loop that records its trajectory
opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
loss_fn = torch.nn.CrossEntropyLoss()
with sg.TrajectoryRecorder(out, model, optimizer=opt, batch_size=128, n=len(x), seed=0) as rec:
    for _epoch in range(5):
        for inputs, targets in loader:
            loss = loss_fn(model(inputs), targets)
            opt.zero_grad()
            loss.backward()
            opt.step()
            rec.step(loss=loss)

# %% read it back (lazily) and check it against the model
traj = sg.load_trajectory(out)
final = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).numpy()
assert len(traj) == 5 * len(loader) and traj.dim == 917
assert np.array_equal(traj.weights[-1], final), "the last record is the final model"
assert traj.scalars["loss"][-20:].mean() < traj.scalars["loss"][:20].mean(), "it trained"
plane = sg.pca_projection(traj, k=2, increments=True)  # top-2 PCA plane of the increments
print(traj)
print(f"temperature β⁻¹ = {traj.meta['temperature']:.3g} (η/(2b)/(1-μ))")
print(f"loss {traj.scalars['loss'][0]:.3f} → {traj.scalars['loss'][-1]:.3f}")
print(f"PCA-of-increments plane: coordinates {plane.apply(traj).shape}")
