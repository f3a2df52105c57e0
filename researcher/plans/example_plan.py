"""An example Fed-BioMed training plan: a logistic regression on a tabular dataset.

fedreq only checks and ships this file; the nodes that approve it run it.
"""

import torch
import torch.nn as nn
from fedbiomed.common.training_plans import TorchTrainingPlan
from fedbiomed.common.data import DataManager


class LogisticRegressionPlan(TorchTrainingPlan):
    """One linear layer and a sigmoid, trained with SGD."""

    class Model(nn.Module):
        def __init__(self, n_features: int = 3):
            super().__init__()
            self.linear = nn.Linear(n_features, 1)

        def forward(self, x):
            return torch.sigmoid(self.linear(x))

    def init_model(self, model_args):
        return self.Model(model_args.get("n_features", 3))

    def init_optimizer(self, optimizer_args):
        return torch.optim.SGD(self.model().parameters(), lr=optimizer_args.get("lr", 0.01))

    def init_dependencies(self):
        return ["import torch", "import torch.nn as nn"]

    def training_data(self, batch_size=32):
        import pandas as pd

        frame = pd.read_csv(self.dataset_path)
        features = torch.tensor(frame.iloc[:, :-1].values, dtype=torch.float32)
        target = torch.tensor(frame.iloc[:, -1].values, dtype=torch.float32).unsqueeze(1)
        return DataManager(dataset=features, target=target, batch_size=batch_size, shuffle=True)

    def training_step(self, data, target):
        prediction = self.model().forward(data)
        return nn.functional.binary_cross_entropy(prediction, target)
