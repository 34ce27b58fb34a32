"""Data-parallel training under torchrun (`torchrun --standalone --nproc_per_node 4 train_X.py ...`), with no
flag of our own: one process per GPU (or CPU worker), each computing a disjoint share of every step's batch;
rank 0 alone prints and writes. Launched plainly, everything here is a no-op for one process."""
import contextlib
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
        self.distributed, self.is_main = self.world_size > 1, self.rank == 0

    def device_name(self, name):
        """Each process takes the GPU of its local rank; a CPU run stays on the CPU."""
        require(not self.distributed or name in ('auto', 'cuda', 'cpu'), f'under torchrun, --device must be auto, '
                f'cuda or cpu (each process takes the GPU of its LOCAL_RANK), got {name!r}')
        use_gpu = self.distributed and name != 'cpu' and torch.cuda.is_available()
        return f'cuda:{self.local_rank}' if use_gpu else name

    def check_batch_size(self, batch_size):
        require(batch_size % self.world_size == 0, f'batch_size {batch_size} must be divisible by the '
                                                   f'{self.world_size} processes, which share each step\'s batch')

    @contextlib.contextmanager
    def joined(self, device):
        """Inside the block, the processes form one group: NCCL between GPUs, gloo between CPU processes."""
        if not self.distributed:
            yield
            return
        if device.type == 'cuda':
            torch.cuda.set_device(device)
        dist.init_process_group('nccl' if device.type == 'cuda' else 'gloo')
        try:
            yield
        finally:
            dist.destroy_process_group()

    def wrap(self, model, device):
        """The model as DistributedDataParallel (gradients averaged over the processes), or as it is."""
        if not self.distributed:
            return model
        return DistributedDataParallel(model, device_ids=[device.index] if device.type == 'cuda' else None)

    def batch_order(self, seed, device):
        """A generator drawing one batch order for all processes, whose own draws (augmentation, dropout) then
        differ; None for one process (torch's own generator)."""
        if not self.distributed:
            return None
        torch.manual_seed(seed + self.rank)
        return torch.Generator(device=device).manual_seed(seed)

    def shard(self, tensor):
        """This process's share of a batch: every world_size-th row, starting at its rank."""
        return tensor[self.rank::self.world_size] if self.distributed else tensor

    def sum(self, tensor):
        """Sum a tensor over the processes, in place."""
        if self.distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def mean(self, tensor):
        """The mean of a tensor over the processes (a new tensor; the same in every process)."""
        return self.sum(tensor.clone()) / self.world_size if self.distributed else tensor

    def share_buffers(self, module):
        """Give every process rank 0's buffers (BatchNorm statistics, updated by each from its share): one model."""
        if self.distributed:
            for buffer in module.buffers():
                dist.broadcast(buffer, src=0)
