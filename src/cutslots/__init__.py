"""cutslots: differentiable min-cut and matching QP layers for object-centric learning.

Layers of the package, each ignorant of the ones above it:

- ``cutslots.config``: typed configs read from YAML (pydantic sections, overrides); a leaf
  that any layer's builder may read. ``cutslots.checks``: the shared argument checks.
- ``cutslots.qp``: the QP math core (generic equality-constrained QP layer, grid s-t cut
  QP with an exact closed-form solver, matching QPs). No vision code.
- ``cutslots.nn``: network layers built on the core (``KPartition``, the two groupings in
  ``nn.grouping``, ``SlotMatcher``, ``SlotAttention``). No datasets.
- ``cutslots.models``: encoders, decoders, the autoencoders trained in the paper, and
  ``models.builders`` (a model from a config's model section).
- ``cutslots.data``: synthetic scene generators, readers of the published datasets and
  ``data.registry`` (a dataset from a config's data section).
- ``cutslots.metrics``: metrics on arrays, no models: ``segmentation`` (ARI, ARI-FG, mIoU,
  MSE) and ``tracking`` (slot tracks through clips, matching accuracy).
- ``cutslots.plots``: the figures, as matplotlib ``Figure`` objects, and their PNG writer.
- ``cutslots.train`` / ``cutslots.experiments`` / ``cutslots.bench`` / ``cutslots.cli``: the edge. In
  ``experiments``: ``evaluation`` (a model on image datasets), ``inference`` (a model over
  video clips), ``common`` (shared helpers) and one runner per experiment (``discovery``,
  ``video``, ``cora_matching``, ``cut_fidelity``).
"""

__version__ = "0.1.0"
