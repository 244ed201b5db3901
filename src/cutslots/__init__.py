"""cutslots: differentiable min-cut and matching QP layers for object-centric learning.

Layers of the package, each ignorant of the ones above it:

- ``cutslots.qp``: the QP math core (generic equality-constrained QP layer, grid s-t cut
  QP with an exact closed-form solver, matching QPs). No vision code.
- ``cutslots.nn``: network layers built on the core (``KPartition``, slot heads,
  ``SlotMatcher``) and the Slot Attention baseline. No datasets.
- ``cutslots.models``: encoders, decoders and the autoencoders trained in the paper.
- ``cutslots.data``: synthetic scene generators and readers of the published datasets.
- ``cutslots.metrics``: ARI, ARI-FG, mIoU, MSE.
- ``cutslots.train`` / ``cutslots.experiments`` / ``cutslots.cli``: the edge.
"""

__version__ = "0.1.0"
