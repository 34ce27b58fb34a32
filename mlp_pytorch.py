"""Multi-layer perceptron in PyTorch.

    MLP(3072, [100], 10)     # the assignment's network: Linear -> ELU -> Linear, weights of std 1e-4
    MLP(3072, [1024, 512], 10, activation='gelu', norm='batchnorm', dropout=0.2, init='kaiming')

Each hidden layer is Linear -> [norm] -> activation -> [dropout]. Outputs logits.
"""
from torch import nn

from custom_layernorm import CustomLayerNormManualModule

WEIGHT_INIT_STD = 1e-4  # the NumPy modules' N(0, 0.0001**2)


ACTIVATIONS = {'elu': nn.ELU, 'tanh': nn.Tanh, 'relu': nn.ReLU, 'gelu': nn.GELU, 'silu': nn.SiLU,
               'leaky_relu': nn.LeakyReLU}
NORMS = {'none': None, 'batchnorm': nn.BatchNorm1d, 'layernorm': nn.LayerNorm,
         'custom_layernorm': CustomLayerNormManualModule}
INITS = ('assignment', 'pytorch', 'kaiming', 'xavier')


class MLP(nn.Module):
    """`n_hidden` lists the hidden widths ([] gives multinomial logistic regression).

    activation: one of ACTIVATIONS; norm: one of NORMS (after each hidden Linear);
    dropout: probability after each hidden activation; init: 'assignment' (normal weights of standard
    deviation 1e-4, zero biases, like the NumPy MLP), 'pytorch' (nn.Linear's default),
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
            layers.append(nn.Linear(fan_in, fan_out))
            if NORMS[norm] is not None:
                layers.append(NORMS[norm](fan_out))
            layers.append(ACTIVATIONS[activation]())
            if dropout:
                layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(sizes[-1], n_classes))
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
