"""Where the PyTorch MLP's time goes against the NumPy MLP's: one SGD training step of
- the default network (3072-100-10) at the default batch of 200;
- the same network at a batch of 1, where what is left is the work that does not grow with the
  batch: the weight gradients (outer products) and the update of its 308,310 weights;
- a tiny network (10-10-10) at a batch of 1, where nearly all that is left is each framework's
  fixed cost per step (module calls, autograd's graph, the optimizer, the loss).

    python -m benchmarks.bench_step_overhead --json bench_step_overhead.json

Random data, float32, both in one process (the batch-1 steps barely use the BLAS threads);
medians over rounds in which the two alternate.
"""
import json

import numpy as np
import torch

from benchmarks.timing import alternate, benchmark_parser, medians, publish, seconds_per_call
from cli_utils import run_cli
from mlp_numpy import MLP as NumpyMLP
from mlp_pytorch import MLP as TorchMLP
from modules import CrossEntropyModule

LEARNING_RATE = 1e-3
# (name, layer sizes, batch size)
CASES = [('default network, batch 200', [3072, 100, 10], 200), ('default network, batch 1', [3072, 100, 10], 1),
         ('tiny network, batch 1', [10, 10, 10], 1)]
STEPS_PER_MEASUREMENT = 200


def numpy_step(sizes, batch_size):
    model = NumpyMLP(sizes[0], sizes[1:-1], sizes[-1], dtype=np.float32, input_grad=False)
    loss_module = CrossEntropyModule()
    x = np.random.standard_normal((batch_size, sizes[0])).astype(np.float32)
    y = np.eye(sizes[-1], dtype=np.float32)[np.random.randint(0, sizes[-1], batch_size)]

    def step():
        probs = model.forward(x)
        loss_module.forward(probs, y)
        model.backward(loss_module.backward(probs, y))
        for param, grad in model.parameters():
            param -= LEARNING_RATE * grad
    return step


def torch_step(sizes, batch_size):
    model = TorchMLP(sizes[0], sizes[1:-1], sizes[-1])
    opt = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
    x, y = torch.randn(batch_size, sizes[0]), torch.randint(0, sizes[-1], (batch_size,))
    return training_step_of(model, opt, x, y)


def training_step_of(model, optimizer, x, y):
    """A function that runs one training step of `model` (cross-entropy, backward, update) on the fixed batch."""
    def step():
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step


def main():
    args = benchmark_parser(__doc__, rounds=9, data=False).parse_args()
    rows = []
    for name, sizes, batch_size in CASES:
        steps = {'numpy': numpy_step(sizes, batch_size), 'pytorch': torch_step(sizes, batch_size)}
        times = alternate(steps, args.rounds, lambda step: seconds_per_call(step, STEPS_PER_MEASUREMENT, warmup=10))
        median = medians(times)
        rows.append({'case': name, 'sizes': sizes, 'batch_size': batch_size, 'numpy_us': round(median['numpy'] * 1e6, 1),
                     'pytorch_us': round(median['pytorch'] * 1e6, 1),
                     'pytorch_minus_numpy_us': round((median['pytorch'] - median['numpy']) * 1e6, 1)})
        print(json.dumps(rows[-1]), flush=True)
    publish({'rounds': args.rounds, 'threads': torch.get_num_threads(), 'torch': torch.__version__, 'rows': rows},
            f'{len(rows)} cases measured', args.json)


if __name__ == '__main__':
    raise SystemExit(run_cli(main))
