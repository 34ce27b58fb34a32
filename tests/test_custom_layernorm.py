"""Custom LayerNorm: gradcheck, agreement with torch's layer_norm, the three classes
with each other, input checks, unneeded gradients and saved bytes."""
import pytest
import torch

from custom_layernorm import CustomLayerNormAutograd, CustomLayerNormManualFunction, CustomLayerNormManualModule

SHAPES = [(1, 2), (3, 5), (8, 16), (32, 7)]


def make_inputs(shape, seed=0, requires_grad=(True, True, True)):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=gen, dtype=torch.float64) * 3 + 1
    gamma = torch.randn(shape[1], generator=gen, dtype=torch.float64)
    beta = torch.randn(shape[1], generator=gen, dtype=torch.float64)
    return [t.requires_grad_(flag) for t, flag in zip((x, gamma, beta), requires_grad)]


@pytest.mark.parametrize('shape', SHAPES)
@pytest.mark.parametrize('requires_grad', [(True, True, True), (True, False, False), (False, True, True),
                                           (False, True, False), (False, False, True)])
def test_gradcheck(shape, requires_grad):
    inputs = make_inputs(shape, requires_grad=requires_grad)
    assert torch.autograd.gradcheck(CustomLayerNormManualFunction.apply, inputs)


@pytest.mark.parametrize('shape', SHAPES)
def test_matches_torch_layer_norm(shape):
    x, gamma, beta = make_inputs(shape)
    grad_out = torch.randn(*shape, dtype=torch.float64)
    reference = torch.nn.functional.layer_norm(x, (shape[1],), gamma, beta, eps=1e-5)
    ref_grads = torch.autograd.grad(reference, (x, gamma, beta), grad_out)
    for apply in (CustomLayerNormManualFunction.apply, CustomLayerNormManualFunction(shape[1]).apply):
        out = apply(x, gamma, beta)
        grads = torch.autograd.grad(out, (x, gamma, beta), grad_out)
        assert torch.allclose(out, reference, rtol=0, atol=1e-10)
        for grad, ref in zip(grads, ref_grads):
            assert torch.allclose(grad, ref, rtol=0, atol=1e-10)


@pytest.mark.parametrize('shape', SHAPES)
def test_three_classes_agree(shape):
    x, gamma, beta = make_inputs(shape)
    grad_out = torch.randn(*shape, dtype=torch.float64)
    results = []
    for cls in (CustomLayerNormAutograd, CustomLayerNormManualModule):
        module = cls(shape[1]).double()
        with torch.no_grad():
            module.gamma.copy_(gamma)
            module.beta.copy_(beta)
        xi = x.detach().clone().requires_grad_()
        out = module(xi)
        out.backward(grad_out)
        results.append((out.detach(), xi.grad, module.gamma.grad, module.beta.grad))
    function_out = CustomLayerNormManualFunction.apply(x, gamma, beta)
    function_out.backward(grad_out)
    results.append((function_out.detach(), x.grad, gamma.grad, beta.grad))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.allclose(a, b, rtol=0, atol=1e-10)


@pytest.mark.parametrize('cls', [CustomLayerNormAutograd, CustomLayerNormManualModule])
def test_normalizes_rows_with_default_parameters(cls):
    module = cls(64).double()
    assert torch.equal(module.gamma, torch.ones(64, dtype=torch.float64))
    assert torch.equal(module.beta, torch.zeros(64, dtype=torch.float64))
    out = module(torch.randn(10, 64, dtype=torch.float64) * 5 + 3)
    assert torch.allclose(out.mean(dim=1), torch.zeros(10, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(out.var(dim=1, unbiased=False), torch.ones(10, dtype=torch.float64), atol=1e-5)


@pytest.mark.parametrize('cls', [CustomLayerNormAutograd, CustomLayerNormManualModule])
def test_bad_shapes_raise(cls):
    module = cls(8)
    with pytest.raises(ValueError, match=r'expects input of shape \[batch, 8\], got \[4, 7\]'):
        module(torch.randn(4, 7))
    with pytest.raises(ValueError, match=r'expects input of shape \[batch, 8\], got \[2, 4, 8\]'):
        module(torch.randn(2, 4, 8))
    with pytest.raises(ValueError, match=r'expects input of shape \[batch, 8\], got \[8\]'):
        module(torch.randn(8))


def test_function_checks_parameter_shapes():
    with pytest.raises(ValueError, match=r'got input \[3, 5\], gamma \[4\], beta \[5\]'):
        CustomLayerNormManualFunction.apply(torch.randn(3, 5), torch.ones(4), torch.zeros(5))
    with pytest.raises(ValueError, match=r'got input \[3, 5, 1\]'):
        CustomLayerNormManualFunction.apply(torch.randn(3, 5, 1), torch.ones(5), torch.zeros(5))


class FakeContext:
    """Stands in for autograd's ctx, to call forward and backward directly."""

    def __init__(self, needs_input_grad):
        self.needs_input_grad = needs_input_grad

    def save_for_backward(self, *tensors):
        self.saved_tensors = tensors


@pytest.mark.parametrize('needs', [(True, True, True), (True, False, False), (False, True, False),
                                   (False, False, True), (False, True, True)])
def test_backward_returns_none_where_not_needed(needs):
    x, gamma, beta = make_inputs((4, 6), requires_grad=(False, False, False))
    ctx = FakeContext(needs + (False,))
    CustomLayerNormManualFunction.forward(ctx, x, gamma, beta)
    grads = CustomLayerNormManualFunction.backward(ctx, torch.ones(4, 6, dtype=torch.float64))
    assert len(grads) == 4 and grads[3] is None
    for grad, needed in zip(grads[:3], needs):
        assert (grad is not None) == needed
    # only what the needed gradients use is kept: x_hat for dX or dgamma; rstd and gamma for dX
    x_hat, rstd, saved_gamma = ctx.saved_tensors
    assert (x_hat is not None) == (needs[0] or needs[1])
    assert (rstd is not None) == needs[0] and (saved_gamma is not None) == needs[0]


def saved_bytes(fn):
    """Bytes of the tensors autograd keeps for backward while fn() builds the graph
    (each tensor storage counted once)."""
    storages = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        out = fn()
    return sum(storages.values()), out


def test_manual_module_saves_at_most_half_the_bytes_of_autograd():
    x = torch.randn(128, 256, requires_grad=True)
    manual, _ = saved_bytes(lambda: CustomLayerNormManualModule(256)(x))
    automatic, _ = saved_bytes(lambda: CustomLayerNormAutograd(256)(x))
    assert 2 * manual <= automatic
    assert manual == (x.numel() + 128 + 256) * 4  # x_hat [S, M], rstd [S, 1], gamma [M]


@pytest.mark.parametrize('shape', [(128, 1024), (257, 33), (2, 4096)])
def test_float32_matches_torch_layer_norm(shape):
    """Rows longer than a SIMD vector, more rows than threads, float32 as the benchmark uses."""
    gen = torch.Generator().manual_seed(1)
    x = (torch.randn(*shape, generator=gen) * 4 + 2).requires_grad_()
    gamma = torch.randn(shape[1], generator=gen).requires_grad_()
    beta = torch.randn(shape[1], generator=gen).requires_grad_()
    grad_out = torch.randn(*shape, generator=gen)
    reference = torch.nn.functional.layer_norm(x, (shape[1],), gamma, beta)
    out = CustomLayerNormManualFunction.apply(x, gamma, beta)
    assert torch.allclose(out, reference, rtol=1e-5, atol=1e-5)
    for grad, ref in zip(torch.autograd.grad(out, (x, gamma, beta), grad_out),
                         torch.autograd.grad(reference, (x, gamma, beta), grad_out)):
        assert torch.allclose(grad, ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item())


def test_non_contiguous_and_mixed_inputs():
    x, gamma, beta = make_inputs((6, 5))
    x_t = x.detach().t().contiguous().t().requires_grad_()  # same values, column-major
    grad_out = torch.randn(5, 6, dtype=torch.float64).t()  # a non-contiguous gradient
    reference = torch.nn.functional.layer_norm(x, (5,), gamma, beta)
    out = CustomLayerNormManualFunction.apply(x_t, gamma, beta)
    assert torch.allclose(out, reference, rtol=0, atol=1e-10)
    assert torch.allclose(torch.autograd.grad(out, x_t, grad_out)[0],
                          torch.autograd.grad(reference, x, grad_out)[0], rtol=0, atol=1e-10)
    # float32 gamma with a float64 input: promoted as torch promotes
    mixed = CustomLayerNormManualFunction.apply(x, gamma.float(), beta.float())
    assert mixed.dtype == torch.float64
    assert torch.allclose(mixed, reference, atol=1e-6)


def test_double_backward_is_refused():
    x, gamma, beta = make_inputs((4, 6))
    grad_x, = torch.autograd.grad(CustomLayerNormManualFunction.apply(x, gamma, beta).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError):
        grad_x.sum().backward()
