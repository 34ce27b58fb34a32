"""Where the PyTorch MLP's time goes against the NumPy MLP's: one training step of the default
network (3072-100-10, SGD) at the default batch of 200 and at a batch of 1, where the
arithmetic is negligible and what is left is each framework's fixed cost per step (module
calls, autograd's graph, the optimizer, the loss).

    python -m benchmarks.bench_step_overhead --json bench_step_overhead.json

Random data, float32, both in one process (the batch-1 steps barely use the BLAS threads);
medians over rounds in which the two alternate.
"""
import argparse
import json

import numpy as np
import torch

from benchmarks.timing import alternate, medians, seconds_per_call
from experiments.records import write_json
from mlp_numpy import MLP as NumpyMLP
from mlp_pytorch import MLP as TorchMLP
from modules import CrossEntropyModule

N_INPUTS, HIDDEN, N_CLASSES, LEARNING_RATE = 3072, [100], 10, 1e-3
BATCH_SIZES = [200, 1]
STEPS_PER_MEASUREMENT = 200


def numpy_step(batch_size):
    model, loss_module = NumpyMLP(N_INPUTS, HIDDEN, N_CLASSES, dtype=np.float32, input_grad=False), CrossEntropyModule()
    x = np.random.standard_normal((batch_size, N_INPUTS)).astype(np.float32)
    y = np.eye(N_CLASSES, dtype=np.float32)[np.random.randint(0, N_CLASSES, batch_size)]

    def step():
        probs = model.forward(x)
        loss_module.forward(probs, y)
        model.backward(loss_module.backward(probs, y))
        for param, grad in model.parameters():
            param -= LEARNING_RATE * grad
    return step


def torch_step(batch_size):
    model = TorchMLP(N_INPUTS, HIDDEN, N_CLASSES)
    opt = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
    x, y = torch.randn(batch_size, N_INPUTS), torch.randint(0, N_CLASSES, (batch_size,))

    def step():
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def main():
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('--rounds', type=int, default=9)
    parser.add_argument('--json', default=None, help='save the results as docs/results/JSON')
    args = parser.parse_args()
    rows = []
    for batch_size in BATCH_SIZES:
        steps = {'numpy': numpy_step(batch_size), 'pytorch': torch_step(batch_size)}
        times = alternate(steps, args.rounds, lambda step: seconds_per_call(step, STEPS_PER_MEASUREMENT, warmup=10))
        median = medians(times)
        rows.append({'batch_size': batch_size, 'numpy_us': round(median['numpy'] * 1e6, 1),
                     'pytorch_us': round(median['pytorch'] * 1e6, 1),
                     'pytorch_minus_numpy_us': round((median['pytorch'] - median['numpy']) * 1e6, 1)})
        print(json.dumps(rows[-1]), flush=True)
    if args.json:
        write_json(args.json, {'rounds': args.rounds, 'threads': torch.get_num_threads(), 'torch': torch.__version__,
                               'rows': rows})


if __name__ == '__main__':
    main()
