"""Multi-layer perceptron in PyTorch.

    MLP(3072, [100], 10)     # the assignment's network: Linear -> ELU -> Linear, N(0, 1e-4) weights
    MLP(3072, [1024, 512], 10, activation='gelu', norm='batchnorm', dropout=0.2, init='kaiming')

Each hidden layer is Linear -> [norm] -> activation -> [dropout]. Outputs logits.
"""
import warnings

import torch
from torch import nn

from custom_layernorm import CustomLayerNormManualModule

WEIGHT_INIT_STD = 1e-4  # the NumPy modules' N(0, 0.0001**2)


def _onednn_linear(x, weight, bias=None):
    """x @ weight.T + bias through oneDNN's float32 matmul, which torch ships for its compiled
    CPU graphs (torch.ops.mkldnn._linear_pointwise, not a public API)."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, 'none', [], '')


class _OneDNNLinearFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)  # what nn.Linear keeps too
        ctx.has_bias = bias is not None
        return _onednn_linear(x, weight, bias)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):
        x, weight = ctx.saved_tensors
        needs_x, needs_weight, needs_bias = ctx.needs_input_grad
        grad_x = _onednn_linear(grad_output, weight.t()) if needs_x else None  # dY W: [B, in]
        grad_weight = _onednn_linear(grad_output.t(), x.t()) if needs_weight else None  # dY^T X: [out, in]
        grad_bias = grad_output.sum(dim=0) if needs_bias and ctx.has_bias else None
        return grad_x, grad_weight, grad_bias


class Linear(nn.Linear):
    """nn.Linear whose CPU float32 products run on oneDNN instead of torch's default BLAS.

    On our AMD CPU, oneDNN computes the default run's weight gradient and test evaluation
    a quarter to a third faster than torch's MKL sgemm, and the products of --preset best's
    wider layers up to a quarter faster (one is even); benchmarks/bench_mlp_kernels.py.
    Small products, other dtypes and devices, inputs that are not [batch, features], a torch
    without the op, and torch.compile (whose graphs cannot take the op with a trainable
    weight) use nn.Linear's own F.linear. A first failure of the oneDNN call
    switches it off with one warning, as Linear.onednn = False does.
    """

    onednn = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, '_linear_pointwise')
    ONEDNN_MIN_MACS = 1 << 20  # smaller products: oneDNN's fixed cost per call (~25-40 us) outweighs its speed

    def forward(self, x):
        if not (Linear.onednn and not torch.compiler.is_compiling()
                and x.dim() == 2 and x.shape[1] == self.in_features and x.device.type == 'cpu'
                and x.dtype == self.weight.dtype == torch.float32
                and x.shape[0] * self.in_features * self.out_features >= self.ONEDNN_MIN_MACS):
            return nn.functional.linear(x, self.weight, self.bias)
        try:
            return _OneDNNLinearFunction.apply(x, self.weight, self.bias)
        except RuntimeError as err:
            Linear.onednn = False
            warnings.warn(f'mlp_pytorch.Linear: oneDNN matmul failed ({err}); using F.linear', RuntimeWarning)
            return nn.functional.linear(x, self.weight, self.bias)


class _ELUFunction(torch.autograd.Function):
    """ELU (alpha 1) as exp(min(x, 0)) - 1 + max(x, 0), the NumPy module's formula."""

    @staticmethod
    def forward(ctx, x):
        out = torch.clamp_max(x, 0).exp_().sub_(1).add_(torch.clamp_min(x, 0))
        ctx.save_for_backward(out)  # the derivative follows from the output alone
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):
        out, = ctx.saved_tensors
        return torch.clamp_max(out, 0).add_(1).mul_(grad_output)  # 1 where x > 0, exp(x) = out + 1 elsewhere


class ELU(nn.Module):
    """nn.ELU() with the same values, faster on CPU.

    torch's CPU ELU kernel computes expm1, which is slow on our AVX-512 AMD machine: for the
    default run's 200x100 batch, forward and backward take about twice as long as the
    exp-based function above (benchmarks/bench_mlp_kernels.py). exp(x) - 1 loses relative precision
    only where |x| is below one ulp of 1, as the NumPy module accepts too. Other devices, and
    ELU.exp_based = False, keep torch's kernel.
    """

    exp_based = True

    def forward(self, x):
        return _ELUFunction.apply(x) if ELU.exp_based and x.device.type == 'cpu' else nn.functional.elu(x)


ACTIVATIONS = {'elu': ELU, 'tanh': nn.Tanh, 'relu': nn.ReLU, 'gelu': nn.GELU, 'silu': nn.SiLU,
               'leaky_relu': nn.LeakyReLU}
NORMS = {'none': None, 'batchnorm': nn.BatchNorm1d, 'layernorm': nn.LayerNorm,
         'custom_layernorm': CustomLayerNormManualModule}
INITS = ('assignment', 'pytorch', 'kaiming', 'xavier')


class MLP(nn.Module):
    """`n_hidden` lists the hidden widths ([] gives multinomial logistic regression).

    activation: one of ACTIVATIONS; norm: one of NORMS (after each hidden Linear);
    dropout: probability after each hidden activation; init: 'assignment' (N(0, 1e-4)
    weights, zero biases, like the NumPy MLP), 'pytorch' (nn.Linear's default),
    'kaiming' (He normal, for ReLU-like activations) or 'xavier' (Glorot normal).
    """

    def __init__(self, n_inputs, n_hidden, n_classes, activation='elu', norm='none', dropout=0.0,
                 init='assignment'):
        super().__init__()
        for name, value, choices in (('activation', activation, ACTIVATIONS), ('norm', norm, NORMS),
                                     ('init', init, INITS)):
            if value not in choices:
                raise ValueError(f'{name} must be one of {sorted(choices)}, got {value!r}')
        if not 0 <= dropout < 1:
            raise ValueError(f'dropout must be in [0, 1), got {dropout}')
        self.n_inputs = n_inputs
        layers = []
        sizes = [n_inputs, *n_hidden]
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            layers.append(Linear(fan_in, fan_out))
            if NORMS[norm] is not None:
                layers.append(NORMS[norm](fan_out))
            layers.append(ACTIVATIONS[activation]())
            if dropout:
                layers.append(nn.Dropout(dropout))
        layers.append(Linear(sizes[-1], n_classes))
        self.layers = nn.Sequential(*layers)
        self.reset_linear(init, activation)

    def reset_linear(self, init, activation='elu'):
        for module in self.layers:
            if not isinstance(module, nn.Linear) or init == 'pytorch':
                continue  # nn.Linear is created with PyTorch's default init
            if init == 'assignment':
                nn.init.normal_(module.weight, 0.0, WEIGHT_INIT_STD)
            elif init == 'kaiming':
                nonlinearity = 'leaky_relu' if activation == 'leaky_relu' else 'relu'
                nn.init.kaiming_normal_(module.weight, nonlinearity=nonlinearity)
            else:
                nn.init.xavier_normal_(module.weight)
            nn.init.zeros_(module.bias)

    def forward(self, x):
        """x [S, n_inputs] or [S, ...] with n_inputs values per sample -> logits [S, n_classes]."""
        x = x.flatten(1)  # [S, 3, 32, 32] -> [S, 3072]
        if x.shape[1] != self.n_inputs:
            raise ValueError(f'MLP expects {self.n_inputs} input features per sample, got {x.shape[1]}')
        return self.layers(x)
