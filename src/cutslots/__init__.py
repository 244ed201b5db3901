"""cutslots: differentiable min-cut and matching QP layers for object-centric learning.

Layers of the package, each ignorant of the ones above it:

- ``cutslots.qp``: the QP math core (generic equality-constrained QP layer, grid s-t cut
  QP with an exact closed-form solver, matching QPs). No vision code.
- ``cutslots.nn``: network layers built on the core (``KPartition``, slot heads,
  ``SlotMatcher``) and the Slot Attention baseline. No datasets.
- ``cutslots.models``: encoders, decoders and the autoencoders trained in the paper.
- ``cutslots.data``: synthetic scene generators and readers of the published datasets.
- ``cutslots.metrics``: metrics on arrays, no models: ``segmentation`` (ARI, ARI-FG, mIoU,
  MSE) and ``tracking`` (slot tracks through clips, matching accuracy).
- ``cutslots.plots``: the figures, as matplotlib ``Figure`` objects, and their PNG writer.
- ``cutslots.train`` / ``cutslots.experiments`` / ``cutslots.cli``: the edge. In
  ``experiments``: ``evaluation`` (a model on image datasets), ``inference`` (a model over
  video clips), ``common`` (shared helpers) and one runner per experiment (``discovery``,
  ``video``, ``cora_matching``, ``cut_fidelity``).
"""

__version__ = "0.1.0"
