"""Data-parallel training under torchrun, with no flag of our own: launched by torchrun (its
WORLD_SIZE, RANK and LOCAL_RANK variables), a run uses one process per GPU (or per CPU
worker), each computing a disjoint share of every step's batch, and rank 0 alone prints,
draws and writes. Launched plainly, everything here is a no-op for one process.

    torchrun --standalone --nproc_per_node 4 train_convnet_pytorch.py --preset best --data_dir ...
"""
import os

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from training_utils import require


class Processes:
    """This run's processes: how many, which one this is, and the few collective steps training needs."""

    def __init__(self, environ=os.environ):
        self.world_size = int(environ.get('WORLD_SIZE', '1'))
        self.rank = int(environ.get('RANK', '0'))
        self.local_rank = int(environ.get('LOCAL_RANK', '0'))
        self.started = False

    @property
    def distributed(self):
        return self.world_size > 1

    @property
    def is_main(self):
        return self.rank == 0

    def device_name(self, name):
        """Each process takes the GPU of its local rank; a CPU run stays on the CPU."""
        if not self.distributed or name == 'cpu':
            return name
        require(name in ('auto', 'cuda'), f'under torchrun, --device must be auto, cuda or cpu (each process '
                                          f'takes the GPU of its LOCAL_RANK), got {name!r}')
        if torch.cuda.is_available():
            return f'cuda:{self.local_rank}'
        require(name == 'auto', 'device cuda is not available: this machine has no CUDA GPU')
        return 'cpu'

    def check_batch_size(self, batch_size):
        require(batch_size % self.world_size == 0, f'batch_size {batch_size} must be divisible by the '
                                                   f'{self.world_size} processes, which share each step\'s batch')

    def start(self, device):
        """Join the process group: NCCL between GPUs, gloo between CPU processes."""
        if self.distributed and not dist.is_initialized():
            if device.type == 'cuda':
                torch.cuda.set_device(device)
            dist.init_process_group('nccl' if device.type == 'cuda' else 'gloo')
            self.started = True

    def stop(self):
        if self.started:
            dist.destroy_process_group()
            self.started = False

    def wrap(self, model, device):
        """The model as DistributedDataParallel (gradients averaged over the processes), or as it is."""
        if not self.distributed:
            return model
        return DistributedDataParallel(model, device_ids=[device.index] if device.type == 'cuda' else None)

    def shard(self, tensor):
        """This process's share of a batch: every world_size-th row, starting at its rank."""
        return tensor[self.rank::self.world_size] if self.distributed else tensor

    def sum_(self, tensor):
        """Sum a tensor over the processes, in place."""
        if self.distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def mean_(self, tensor):
        """Average a tensor over the processes, in place."""
        return self.sum_(tensor).div_(self.world_size) if self.distributed else tensor

    def share_buffers(self, module):
        """Give every process rank 0's buffers (BatchNorm running statistics): each process
        updated its own from its share of the batch, but evaluation must use one model."""
        if self.distributed:
            for buffer in module.buffers():
                dist.broadcast(buffer, src=0)
