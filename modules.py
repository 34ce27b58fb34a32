"""NumPy building blocks of the MLP, each with a hand-written backward pass.

Every module follows one interface: `forward` caches exactly what `backward`
needs; `backward(dout)` fills `grads` (modules with parameters) and returns
dL/dx. All of them are vectorized over the batch and keep the input's dtype:
float64 for gradient checks, float32 for fast training.

Shapes: S samples per batch, M input features, N output features, C classes.
"""
import numpy as np

WEIGHT_INIT_STD = 1e-4  # the assignment's N(0, 0.0001**2) initialisation


class LinearModule:
    """Y = X W^T + b with W [N, M] and b [1, N]."""

    def __init__(self, in_features, out_features, dtype=np.float64, input_grad=True):
        """`dtype` of the parameters (float32 for fast training); `input_grad=False`
        skips dL/dX in backward (the network's first layer needs none)."""
        weight = np.random.normal(0.0, WEIGHT_INIT_STD, size=(out_features, in_features))
        # stored column by column: W^T is then a plain [M, N] array, the layout BLAS multiplies fastest, in the
        # forward X W^T and in the gradient (X^T dY)^T, and the update W -= lr dW runs over both in memory order
        self.params = {'weight': np.asfortranarray(weight, dtype=dtype),
                       'bias': np.zeros((1, out_features), dtype=dtype)}
        self.grads = {name: np.zeros_like(p) for name, p in self.params.items()}
        self.input_grad = input_grad
        self._x = None

    def forward(self, x):
        """x [S, M] -> [S, N]."""
        self._x = x  # dL/dW = dL/dY^T X needs the input
        out = x @ self.params['weight'].T
        out += self.params['bias']
        return out.astype(x.dtype, copy=False)

    def backward(self, dout):
        """dout [S, N] -> dL/dx [S, M] (None when input_grad is False)."""
        self.grads['weight'] = (self._x.T @ dout).T.astype(self.params['weight'].dtype, copy=False)  # dY^T X
        self.grads['bias'] = dout.sum(axis=0, keepdims=True).astype(self.params['bias'].dtype, copy=False)
        if not self.input_grad:
            return None
        return (dout @ self.params['weight']).astype(dout.dtype, copy=False)


class ELUModule:
    """ELU(x) = x for x >= 0, exp(x) - 1 for x < 0, element-wise."""

    def __init__(self):
        self._out = None

    def forward(self, x):
        # max(x, 0) + (exp(min(x, 0)) - 1): exp never sees a positive argument, so it cannot
        # overflow. exp(x) - 1 instead of expm1: NumPy's float32 expm1 is not vectorized
        # (about 9x slower here) and its gain, precision for |x| << 1, is below one ulp of 1.
        neg = np.exp(np.minimum(x, 0))
        neg -= 1
        out = np.maximum(x, 0)
        out += neg
        self._out = out  # the output alone gives the slope: 1 where out >= 0, else exp(x) = out + 1
        return out

    def backward(self, dout):
        return dout * (np.minimum(self._out, 0) + 1)


class SoftMaxModule:
    """Row-wise softmax: Y_ij = exp(X_ij) / sum_k exp(X_ik)."""

    def __init__(self):
        self._out = None

    def forward(self, x):
        """x [S, C] logits -> [S, C] probabilities."""
        # max trick: after subtracting the row maximum every exponent is <= 0, so exp
        # cannot overflow, and the row sum is >= 1, so the division cannot blow up
        e = np.exp(x - x.max(axis=1, keepdims=True))
        out = e / e.sum(axis=1, keepdims=True)
        self._out = out
        return out

    def backward(self, dout):
        # dL/dX = Y o (dL/dY - rowsum(dL/dY o Y)): the Jacobian diag(y) - y^T y, row by row
        y = self._out
        return y * (dout - (dout * y).sum(axis=1, keepdims=True))


class CrossEntropyModule:
    """L = -1/S sum_ik T_ik log X_ik for probabilities X and (one-hot) targets T."""

    @staticmethod
    def _clip(x):
        # probabilities that underflow to 0 are raised to the smallest normal number,
        # so log(x) and 1/x stay finite (-log(tiny) is 708 in float64, 87 in float32)
        return np.maximum(x, np.finfo(x.dtype).tiny)

    def forward(self, x, y):
        """x [S, C] probabilities, y [S, C] targets -> scalar mean loss (x's dtype)."""
        return x.dtype.type(-(y * np.log(self._clip(x))).sum() / x.shape[0])

    def backward(self, x, y):
        """dL/dx [S, C] = -T / (S X)."""
        return (-y / (self._clip(x) * x.shape[0])).astype(x.dtype, copy=False)


class Conv2dModule:
    """2-D cross-correlation (as torch's conv2d), stride 1, no padding, via sliding windows.

    X [S, C_in, H, W], weight [C_out, C_in, kh, kw], bias [C_out] -> Y [S, C_out, H-kh+1, W-kw+1],
    Y[s, o, i, j] = sum_{c, u, v} X[s, c, i+u, j+v] W[o, c, u, v] + b[o].
    """

    def __init__(self, in_channels, out_channels, kernel_size, dtype=np.float64):
        kh, kw = (kernel_size, kernel_size) if np.isscalar(kernel_size) else kernel_size
        fan_in = in_channels * kh * kw
        self.params = {'weight': np.random.normal(0.0, np.sqrt(2.0 / fan_in),
                                                  size=(out_channels, in_channels, kh, kw)).astype(dtype),
                       'bias': np.zeros(out_channels, dtype=dtype)}
        self.grads = {name: np.zeros_like(p) for name, p in self.params.items()}
        self._windows = None

    @staticmethod
    def _windows_of(x, kh, kw):
        # [S, C, H, W] -> [S, C, H-kh+1, W-kw+1, kh, kw]: a view, no copy (im2col without the copy)
        return np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))

    def forward(self, x):
        weight = self.params['weight']
        self._windows = self._windows_of(x, *weight.shape[2:])  # dL/dW needs the input patches
        out = np.tensordot(self._windows, weight, axes=([1, 4, 5], [1, 2, 3]))  # [S, Ho, Wo, C_out]
        out += self.params['bias']
        return out.transpose(0, 3, 1, 2).astype(x.dtype, copy=False)  # [S, C_out, Ho, Wo]

    def backward(self, dout):
        """dout [S, C_out, Ho, Wo] -> dL/dX [S, C_in, H, W]."""
        weight = self.params['weight']
        kh, kw = weight.shape[2:]
        self.grads['weight'] = np.tensordot(dout, self._windows, axes=([0, 2, 3], [0, 2, 3]))  # [C_out, C_in, kh, kw]
        self.grads['bias'] = dout.sum(axis=(0, 2, 3))
        # dL/dX is the full correlation of dout with the kernel flipped in both spatial axes
        padded = np.pad(dout, ((0, 0), (0, 0), (kh - 1, kh - 1), (kw - 1, kw - 1)))
        flipped = weight[:, :, ::-1, ::-1]
        dx = np.tensordot(self._windows_of(padded, kh, kw), flipped, axes=([1, 4, 5], [0, 2, 3]))  # [S, H, W, C_in]
        return dx.transpose(0, 3, 1, 2).astype(dout.dtype, copy=False)
