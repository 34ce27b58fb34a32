"""Layer normalization three ways: autograd, a torch.autograd.Function with a manual
backward, and an nn.Module around that Function.

For X [S, M]: mu_s = mean_i X_si, var_s = mean_i (X_si - mu_s)^2,
Xhat = (X - mu) / sqrt(var + eps), Y = gamma * Xhat + beta (gamma, beta [M]).
The backward's closed form is derived in docs/report.md (question 3.2 a):

    dL/dbeta  = sum_s dY_s
    dL/dgamma = sum_s dY_s * Xhat_s
    dL/dX     = rstd * (G - mean_i(G) - Xhat * mean_i(G * Xhat)),  G = dY * gamma, rstd = 1/sqrt(var + eps)

CustomLayerNormManualFunction computes this closed form in one of two ways. On CPU
(float32/float64) it runs the fused loops of custom_layernorm_kernels.cpp, compiled on
first use with the system's C++ compiler (about a second; cached in
~/.cache/custom_layernorm): a pass or two over each cached row instead of a dozen passes
over the whole tensor, which brings it level with torch's own kernel (docs/report.md,
question 3.2). Without a compiler, on other devices, or with FUSED = False, the same
formula runs as eager torch operations (_forward_eager, _backward_eager).
"""
import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import threading
import warnings

import torch
from torch import nn

EPS_DEFAULT = 1e-5
FUSED = os.environ.get('CUSTOM_LAYERNORM_FUSED', '1') != '0'  # set False to force the eager closed form
KERNEL_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'custom_layernorm_kernels.cpp')


def _check_input(x, n_neurons):
    if x.dim() != 2 or x.shape[1] != n_neurons:
        raise ValueError(f'layer norm expects input of shape [batch, {n_neurons}], got {list(x.shape)}')


class CustomLayerNormAutograd(nn.Module):
    """Layer norm from elementary tensor operations; autograd derives the backward."""

    def __init__(self, n_neurons, eps=EPS_DEFAULT):
        super().__init__()
        self.n_neurons = n_neurons
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(n_neurons))
        self.beta = nn.Parameter(torch.zeros(n_neurons))

    def forward(self, input):
        """input [S, M] -> [S, M]."""
        _check_input(input, self.n_neurons)
        mean = input.mean(dim=1, keepdim=True)
        var = ((input - mean) ** 2).mean(dim=1, keepdim=True)  # biased, as the definition says
        x_hat = (input - mean) / torch.sqrt(var + self.eps)
        return self.gamma * x_hat + self.beta

    def extra_repr(self):
        return f'{self.n_neurons}, eps={self.eps}'


# --------------------------------------------------------------------------- fused kernels

_kernels, _kernels_tried, _kernels_lock = None, False, threading.Lock()


def find_compiler():
    """The C++ compiler to build with: $CXX, else the first of c++, g++, clang++ on PATH; None if none."""
    return os.environ.get('CXX') or shutil.which('c++') or shutil.which('g++') or shutil.which('clang++')


def _build_kernels():
    """Compile custom_layernorm_kernels.cpp (cached by source, flags and host) and load it.

    Raises OSError or RuntimeError when there is no compiler or the build fails.
    """
    compiler = find_compiler()
    if compiler is None:
        raise RuntimeError('no C++ compiler found')
    with open(KERNEL_SOURCE, 'rb') as f:
        source = f.read()
    flags = ['-O3', '-march=native', '-shared', '-fPIC', '-std=c++17']
    # -march=native code runs only on this kind of CPU: key the cache by host as well
    key = hashlib.sha256(b'\0'.join([source, ' '.join([compiler, *flags, platform.node()]).encode()])).hexdigest()[:16]
    cache = os.path.join(os.environ.get('XDG_CACHE_HOME') or os.path.expanduser(os.path.join('~', '.cache')),
                         'custom_layernorm')
    os.makedirs(cache, exist_ok=True)
    library = os.path.join(cache, f'kernels_{key}.so')
    if not os.path.isfile(library):
        partial = f'{library}.{os.getpid()}.tmp'
        # with OpenMP (libgomp is the one torch already loaded), else single-threaded
        for extra in (['-fopenmp'], ['-fopenmp-simd'], []):
            result = subprocess.run([compiler, *flags, *extra, KERNEL_SOURCE, '-o', partial],
                                    capture_output=True, text=True)
            if result.returncode == 0:
                break
        else:
            raise RuntimeError(result.stderr.strip().splitlines()[-1] if result.stderr.strip() else 'compile failed')
        os.replace(partial, library)  # atomic: a concurrent process never loads half a file
    lib = ctypes.CDLL(library)
    for dtype in ('f32', 'f64'):
        getattr(lib, f'layernorm_forward_{dtype}').argtypes = [ctypes.c_void_p] * 6 + [
            ctypes.c_int64, ctypes.c_int64, ctypes.c_double, ctypes.c_int]
        getattr(lib, f'layernorm_backward_{dtype}').argtypes = [ctypes.c_void_p] * 8 + [
            ctypes.c_int64, ctypes.c_int64, ctypes.c_int]
    return lib


def fused_kernels():
    """The compiled kernels, or None (then the eager closed form runs; warned once)."""
    global _kernels, _kernels_tried
    if not _kernels_tried:
        with _kernels_lock:
            if not _kernels_tried:
                try:
                    _kernels = _build_kernels()
                except (OSError, RuntimeError) as err:
                    warnings.warn(f'custom_layernorm: fused CPU kernels unavailable ({err}); '
                                  'using the eager closed form', RuntimeWarning, stacklevel=3)
                _kernels_tried = True
    return _kernels


def _use_fused(*tensors):
    return (FUSED and all(t.device.type == 'cpu' and t.dtype == tensors[0].dtype for t in tensors)
            and tensors[0].dtype in (torch.float32, torch.float64) and fused_kernels() is not None)


def _pointer(tensor):
    return None if tensor is None else tensor.data_ptr()


def _kernel(direction, dtype):
    """The compiled layernorm_{forward,backward}_{f32,f64} function for this dtype."""
    return getattr(fused_kernels(), f"layernorm_{direction}_{'f32' if dtype == torch.float32 else 'f64'}")


def _forward_fused(input, gamma, beta, eps):
    input, gamma, beta = input.contiguous(), gamma.contiguous(), beta.contiguous()
    n_rows, n_features = input.shape
    out = torch.empty_like(input)
    mean, rstd = input.new_empty(n_rows, 1), input.new_empty(n_rows, 1)  # [S, 1]
    _kernel('forward', input.dtype)(
        *map(_pointer, (input, gamma, beta, out, mean, rstd)), n_rows, n_features, eps, torch.get_num_threads())
    return out, mean, rstd


def _backward_fused(grad_output, input, mean, rstd, gamma, needs):
    if not (needs[0] or needs[1]):  # only dbeta: nothing was saved, and it is one column sum
        return None, None, grad_output.sum(dim=0) if needs[2] else None
    grad_output, input = grad_output.contiguous(), input.contiguous()
    n_rows, n_features = input.shape
    grad_input = torch.empty_like(input) if needs[0] else None
    grad_gamma = input.new_empty(n_features) if needs[1] else None
    grad_beta = input.new_empty(n_features) if needs[2] else None
    _kernel('backward', input.dtype)(
        *map(_pointer, (grad_output, input, mean, rstd, gamma.contiguous() if gamma is not None else None,
                        grad_input, grad_gamma, grad_beta)), n_rows, n_features, torch.get_num_threads())
    return grad_input, grad_gamma, grad_beta


# --------------------------------------------------------------------------- eager closed form

def _forward_eager(input, gamma, beta, eps):
    var, mean = torch.var_mean(input, dim=1, keepdim=True, correction=0)  # one fused pass
    rstd = torch.rsqrt(var + eps)  # [S, 1]
    x_hat = torch.sub(input, mean).mul_(rstd)  # centre first: no cancellation when |mean| >> std
    return torch.addcmul(beta, x_hat, gamma), mean, rstd


def _backward_eager(grad_output, input, mean, rstd, gamma, needs):
    grad_input = grad_gamma = grad_beta = None
    if needs[2]:
        grad_beta = grad_output.sum(dim=0)
    if needs[0] or needs[1]:
        x_hat = torch.sub(input, mean).mul_(rstd)
        dy_x_hat = grad_output * x_hat  # [S, M], shared by dgamma and dX
    if needs[1]:
        grad_gamma = dy_x_hat.sum(dim=0)
    if needs[0]:
        n = input.shape[1]
        # with G = dY * gamma: row sums of G and of G * x_hat as matrix-vector products
        mean_g = (grad_output @ gamma).unsqueeze(1) / n  # [S, 1]
        mean_g_x_hat = (dy_x_hat @ gamma).unsqueeze(1) / n  # [S, 1]
        grad_input = torch.addcmul(-mean_g, grad_output, gamma)  # G - mean(G)
        grad_input.addcmul_(x_hat, mean_g_x_hat, value=-1.0).mul_(rstd)  # (... - x_hat mean(G x_hat)) * rstd
    return grad_input, grad_gamma, grad_beta


class CustomLayerNormManualFunction(torch.autograd.Function):
    """Layer norm with a hand-written backward.

    Use as CustomLayerNormManualFunction.apply(input, gamma, beta[, eps]); the
    skeleton's CustomLayerNormManualFunction(n_neurons).apply(...) works too.
    """

    def __init__(self, n_neurons=None, eps=None):
        # the skeleton instantiates the Function; apply is static, so nothing is kept but
        # these two values (and torch.autograd.Function's deprecation warning is skipped)
        self.n_neurons, self.eps = n_neurons, eps

    @staticmethod
    def forward(ctx, input, gamma, beta, eps=EPS_DEFAULT):
        if input.dim() != 2:
            raise ValueError(f'layer norm expects input of shape [batch, features], got {list(input.shape)}')
        if gamma.shape != (input.shape[1],) or beta.shape != (input.shape[1],):
            raise ValueError(f'gamma and beta must have shape [{input.shape[1]}], '
                             f'got {list(gamma.shape)} and {list(beta.shape)}')
        fused = _use_fused(input, gamma, beta)
        out, mean, rstd = (_forward_fused if fused else _forward_eager)(input, gamma, beta, eps)
        needs_input, needs_gamma, _ = ctx.needs_input_grad[:3]
        # saved: the input itself (the caller holds it anyway, so no copy), mean and rstd [S, 1]
        # to rebuild x_hat for dX and dgamma, and gamma for dX; nothing when only dbeta is needed
        keep = needs_input or needs_gamma
        ctx.save_for_backward(input if keep else None, mean if keep else None, rstd if keep else None,
                              gamma if needs_input else None)
        ctx.fused = fused
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):
        input, mean, rstd, gamma = ctx.saved_tensors
        needs = ctx.needs_input_grad[:3]
        grads = (_backward_fused if ctx.fused else _backward_eager)(grad_output, input, mean, rstd, gamma, needs)
        return (*grads, None)


class CustomLayerNormManualModule(nn.Module):
    """nn.Module with parameters gamma (ones) and beta (zeros) calling CustomLayerNormManualFunction."""

    def __init__(self, n_neurons, eps=EPS_DEFAULT):
        super().__init__()
        self.n_neurons = n_neurons
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(n_neurons))
        self.beta = nn.Parameter(torch.zeros(n_neurons))

    def forward(self, input):
        """input [S, M] -> [S, M]."""
        _check_input(input, self.n_neurons)
        return CustomLayerNormManualFunction.apply(input, self.gamma, self.beta, self.eps)

    def extra_repr(self):
        return f'{self.n_neurons}, eps={self.eps}'
