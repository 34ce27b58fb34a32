"""One training step of a ConvNet on a fixed random batch, for throughput measurements
(benchmarks/convnet_gpu.py)."""
import torch
from torch import nn

from convnet_pytorch import ConvNet


def convnet_training_step(*, arch, batch_size, device, channels_last, fused=True, compile_mode=None):
    """A function that runs one Adam step of ConvNet(arch) on one random batch (bf16 autocast on CUDA, the
    model torch.compile'd in compile_mode if given), as train_convnet_pytorch trains it."""
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = ConvNet(3, 10, arch).to(device, memory_format=memory_format)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, fused=fused)
    forward = model if compile_mode is None else torch.compile(model, mode=compile_mode)
    x = torch.randn(batch_size, 3, 32, 32, device=device).contiguous(memory_format=memory_format)
    y = torch.randint(0, 10, (batch_size,), device=device)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == 'cuda'):
            loss = nn.functional.cross_entropy(forward(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step
