"""Experiments: models run on data, scored and reported.

- :mod:`cutslots.experiments.evaluation`: a slot autoencoder evaluated on image datasets
  (decoder and grouping metrics, the grouping's static baseline).
- :mod:`cutslots.experiments.inference`: video models run over clips, giving slot tracks.
- :mod:`cutslots.experiments.common`: helpers the runners share.
- Runners, one per experiment: :mod:`~cutslots.experiments.discovery` (object discovery,
  paper Table 1), :mod:`~cutslots.experiments.video` (Table 2), :mod:`~cutslots.experiments.cora_matching`
  (§6.2), :mod:`~cutslots.experiments.cut_fidelity` (relaxed against exact cuts).
"""
