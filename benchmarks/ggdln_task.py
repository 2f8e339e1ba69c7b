"""Which binary MNIST task shows what gating adds: the GP-limit test error of the deep linear
network, of GGDLNs with M = 4 and 16 half-space gates (one hidden layer) and of the one-layer ReLU
network, at P = 100, 400 and 1000 (T = 0.1, sigma^2 = 1, 800 test images). The candidates: 0-4 vs
5-9 (the earlier studies' task), odd vs even (the parity of the digit class) and {3, 5, 8} vs
{0, 6, 9}, each from 30 principal components or from the 784 raw pixels. An accuracy measurement
(no timing), quoted in docs/ggdln.md, "The task".
"""

from __future__ import annotations

from gdln.datasets.images import binary_digits
from gdln.ggdln import ReLUNetwork, generalisation
from gdln.lab.experiments._ggdln import gated, gp

TASKS = {"0-4 vs 5-9": ((5, 6, 7, 8, 9), (0, 1, 2, 3, 4)), "odd vs even": ((1, 3, 5, 7, 9), (0, 2, 4, 6, 8)),
         "3,5,8 vs 0,6,9": ((3, 5, 8), (0, 6, 9))}
COLUMNS = ["task", "inputs", "P", "DLN", "M = 4", "M = 16", "ReLU"]


def run(sizes=(100, 400, 1000), T: float = 0.1) -> list[dict]:
    rows = []
    for pca in (30, None):
        for name, (positive, negative) in TASKS.items():
            for P in sizes:
                task = binary_digits(P, 800, positive=positive, negative=negative, pca=pca)
                row = {"task": name, "inputs": f"PCA {pca}" if pca else "pixels", "P": P}
                for label, net in (("DLN", gated(task.N0, 1, 100, 0)), ("M = 4", gated(task.N0, 1, 100, 4)),
                                   ("M = 16", gated(task.N0, 1, 100, 16)), ("ReLU", ReLUNetwork(task.N0, (100,)))):
                    row[label] = generalisation(*gp(net, task, T), task.Y_test)["error"]
                rows.append(row)
    return rows
