import torch

class Plan:
    def training_step(self, data, target):
        return (data - target) ** 2
