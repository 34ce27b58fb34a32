"""Multi-layer perceptron in NumPy: Linear -> ELU -> ... -> Linear -> SoftMax.

    model = MLP(3072, [100], 10)
    probs = model.forward(x)             # x [S, 3072] (or [S, 3, 32, 32]) -> [S, 10]
    model.backward(loss.backward(probs, y))
    for param, grad in model.parameters():
        param -= learning_rate * grad
"""
import numpy as np

from modules import ELUModule, LinearModule, SoftMaxModule


class MLP:
    """`n_hidden` lists the hidden layer widths; [] gives multinomial logistic regression.

    The output is the softmax probabilities that CrossEntropyModule takes.
    """

    def __init__(self, n_inputs, n_hidden, n_classes, dtype=np.float64, input_grad=True):
        """`dtype` of the parameters; `input_grad=False` skips dL/dx of the first
        layer, which training never uses (backward then returns None)."""
        sizes = [n_inputs, *n_hidden, n_classes]
        self.n_inputs = n_inputs
        self.layers = []
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            if i > 0:
                self.layers.append(ELUModule())
            self.layers.append(LinearModule(fan_in, fan_out, dtype=dtype, input_grad=input_grad or i > 0))
        self.layers.append(SoftMaxModule())
        self._input_shape = None

    def forward(self, x):
        """x [S, n_inputs] or [S, ...] with n_inputs values per sample -> [S, n_classes]."""
        self._input_shape = x.shape
        out = x.reshape(x.shape[0], -1)  # [S, 3, 32, 32] -> [S, 3072]
        if out.shape[1] != self.n_inputs:
            raise ValueError(f'MLP expects {self.n_inputs} input features per sample, got input of shape {x.shape}')
        for layer in self.layers:
            out = layer.forward(out)
        return out

    def backward(self, dout):
        """Backpropagate dL/d(output) [S, n_classes] through every module.

        Returns dL/dx in the input's shape, or None if input_grad is False.
        """
        for layer in reversed(self.layers):
            dout = layer.backward(dout)
        return None if dout is None else dout.reshape(self._input_shape)

    def parameters(self):
        """Yield (parameter, gradient) array pairs, for in-place updates."""
        for layer in self.layers:
            for name, param in getattr(layer, 'params', {}).items():
                yield param, layer.grads[name]
