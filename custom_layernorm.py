"""Layer normalization three ways: autograd, a torch.autograd.Function with a manual
backward, and an nn.Module around that Function.

For X [S, M]: mu_s = mean_i X_si, var_s = mean_i (X_si - mu_s)^2,
Xhat = (X - mu) / sqrt(var + eps), Y = gamma * Xhat + beta (gamma, beta [M]).
The backward's closed form is derived in docs/report.md (question 3.2 a):

    dL/dbeta  = sum_s dY_s
    dL/dgamma = sum_s dY_s * Xhat_s
    dL/dX     = rstd * (G - mean_i(G) - Xhat * mean_i(G * Xhat)),  G = dY * gamma, rstd = 1/sqrt(var + eps)
"""
import torch
from torch import nn

EPS_DEFAULT = 1e-5


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
        var, mean = torch.var_mean(input, dim=1, keepdim=True, correction=0)  # one fused pass
        rstd = torch.rsqrt(var + eps)  # [S, 1]
        x_hat = torch.sub(input, mean).mul_(rstd)  # centre first: no cancellation when |mean| >> std
        needs_input, needs_gamma, _ = ctx.needs_input_grad[:3]
        # saved: x_hat for dX and dgamma, rstd [S, 1] and gamma for dX; nothing when only dbeta
        # is needed. x_hat stands in for input, mean and var: one [S, M] tensor in all.
        ctx.save_for_backward(x_hat if needs_input or needs_gamma else None,
                              rstd if needs_input else None, gamma if needs_input else None)
        return torch.addcmul(beta, x_hat, gamma)

    @staticmethod
    def backward(ctx, grad_output):
        x_hat, rstd, gamma = ctx.saved_tensors
        needs_input, needs_gamma, needs_beta = ctx.needs_input_grad[:3]
        grad_input = grad_gamma = grad_beta = None
        if needs_beta:
            grad_beta = grad_output.sum(dim=0)
        if needs_input or needs_gamma:
            dy_x_hat = grad_output * x_hat  # [S, M], shared by dgamma and dX
        if needs_gamma:
            grad_gamma = dy_x_hat.sum(dim=0)
        if needs_input:
            n = x_hat.shape[1]
            # with G = dY * gamma: row sums of G and of G * x_hat as matrix-vector products
            mean_g = (grad_output @ gamma).unsqueeze(1) / n  # [S, 1]
            mean_g_x_hat = (dy_x_hat @ gamma).unsqueeze(1) / n  # [S, 1]
            grad_input = torch.addcmul(-mean_g, grad_output, gamma)  # G - mean(G)
            grad_input.addcmul_(x_hat, mean_g_x_hat, value=-1.0).mul_(rstd)  # (... - x_hat mean(G x_hat)) * rstd
        return grad_input, grad_gamma, grad_beta, None


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
