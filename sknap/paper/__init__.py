"""The paper's reproduction: checkpoint sweeps, reports, data sets, backbones.

Tooling built on the library, which never imports it (``import sknap`` does
not load it): the checkpoint sweep (:mod:`sknap.paper.experiments`), its
report (:mod:`sknap.paper.report`, :mod:`sknap.paper.markdown`,
:mod:`sknap.paper.verdicts`), several seeds with their spread and intervals
(:mod:`sknap.paper.seeds`), the offline
data sets (:mod:`sknap.paper.datasets`, :mod:`sknap.paper.idx`), the
backbones of the paper (:mod:`sknap.paper.backbones`) and the ``sknap``
command (:mod:`sknap.paper.cli`).
"""
