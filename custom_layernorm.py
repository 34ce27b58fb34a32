"""Layer normalization three ways: an nn.Module that autograd differentiates, a
torch.autograd.Function with a hand-written backward, and an nn.Module around that Function.

For X [S, M]: mu_s = mean_i X_si, var_s = mean_i (X_si - mu_s)^2, r_s = 1 / sqrt(var_s + eps),
Xhat = (X - mu) * r, Y = gamma * Xhat + beta (gamma, beta [M]). The backward's closed form,
derived in docs/report.md (question 3.2 a), with G = dY * gamma:

    dL/dbeta  = sum_s dY_s
    dL/dgamma = sum_s dY_s * Xhat_s
    dL/dX     = r * (G - mean_i(G) - Xhat * mean_i(G * Xhat))
"""
import torch
from torch import nn

EPS_DEFAULT = 1e-5


class _LayerNormParameters(nn.Module):
    """What both modules share: gamma (ones) and beta (zeros) as parameters, and the shape check."""

    def __init__(self, n_neurons, eps=EPS_DEFAULT):
        super().__init__()
        self.n_neurons = n_neurons
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(n_neurons))
        self.beta = nn.Parameter(torch.zeros(n_neurons))

    def check_input(self, input):
        if input.dim() != 2 or input.shape[1] != self.n_neurons:
            raise ValueError(f'layer norm expects input of shape [batch, {self.n_neurons}], got {list(input.shape)}')

    def extra_repr(self):
        return f'{self.n_neurons}, eps={self.eps}'


class CustomLayerNormAutograd(_LayerNormParameters):
    """Layer norm from elementary tensor operations; autograd derives the backward."""

    def forward(self, input):
        """input [S, M] -> [S, M]."""
        self.check_input(input)
        mean = input.mean(dim=1, keepdim=True)  # [S, 1]
        var = ((input - mean) ** 2).mean(dim=1, keepdim=True)  # biased, as the definition says
        x_hat = (input - mean) / torch.sqrt(var + self.eps)
        return self.gamma * x_hat + self.beta


class CustomLayerNormManualFunction(torch.autograd.Function):
    """Layer norm with a hand-written backward.

    Use as CustomLayerNormManualFunction.apply(input, gamma, beta[, eps]); the
    skeleton's CustomLayerNormManualFunction(n_neurons).apply(...) works too.
    """

    def __init__(self, n_neurons=None, eps=None):
        # the skeleton instantiates the Function; apply is static, so these two values are all it keeps
        self.n_neurons, self.eps = n_neurons, eps

    @staticmethod
    def forward(ctx, input, gamma, beta, eps=EPS_DEFAULT):
        if input.dim() != 2 or gamma.shape != (input.shape[1],) or beta.shape != (input.shape[1],):
            raise ValueError(f'layer norm expects input [batch, M] with gamma and beta [M], got input '
                             f'{list(input.shape)}, gamma {list(gamma.shape)}, beta {list(beta.shape)}')
        var, mean = torch.var_mean(input, dim=1, keepdim=True, correction=0)  # [S, 1] each, no Bessel correction
        rstd = torch.rsqrt(var + eps)  # [S, 1]
        x_hat = (input - mean) * rstd
        # keep only what the needed gradients use: x_hat for dX and dgamma, rstd and gamma for dX
        needs_input, needs_gamma, _ = ctx.needs_input_grad[:3]
        ctx.save_for_backward(x_hat if needs_input or needs_gamma else None,
                              rstd if needs_input else None, gamma if needs_input else None)
        return gamma * x_hat + beta

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):
        x_hat, rstd, gamma = ctx.saved_tensors
        needs_input, needs_gamma, needs_beta = ctx.needs_input_grad[:3]
        grad_input = grad_gamma = grad_beta = None
        if needs_beta:
            grad_beta = grad_output.sum(dim=0)
        if needs_gamma:
            grad_gamma = (grad_output * x_hat).sum(dim=0)
        if needs_input:
            g = grad_output * gamma  # dL/dXhat [S, M]
            grad_input = rstd * (g - g.mean(dim=1, keepdim=True) - x_hat * (g * x_hat).mean(dim=1, keepdim=True))
        return grad_input, grad_gamma, grad_beta, None


class CustomLayerNormManualModule(_LayerNormParameters):
    """Layer norm whose backward is CustomLayerNormManualFunction's hand-written one."""

    def forward(self, input):
        """input [S, M] -> [S, M]."""
        self.check_input(input)
        return CustomLayerNormManualFunction.apply(input, self.gamma, self.beta, self.eps)
