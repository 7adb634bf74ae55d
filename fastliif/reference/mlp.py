"""The LIIF implicit decoder: Linear/ReLU stack with the official attribute names."""
import torch.nn as nn

from ..models import register


@register("mlp")
class MLP(nn.Module):
    def __init__(self, in_dim, out_dim, hidden_list):
        super().__init__()
        layers = []
        width = in_dim
        for hidden in hidden_list:
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        layers.append(nn.Linear(width, out_dim))
        self.layers = nn.Sequential(*layers)  # state_dict keys: layers.{0,2,4,...}.weight/bias

    def forward(self, x):
        lead = x.shape[:-1]
        y = self.layers(x.reshape(-1, x.shape[-1]))
        return y.view(*lead, -1)
