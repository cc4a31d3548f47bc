"""The experiment archive and meta-analysis over it (issue 15).

``archive``: list, describe and delete what the coordinator keeps per experiment (versions, stage-1 tables,
analyses). ``replay``: a changed metric definition replayed over archived experiments, old against new
(``report``: its HTML page). ``compression``: n-tile against exact results over the archive. ``notebook``:
the replay notebook example. Commands: ``xpcompute archive ...``, ``xpcompute meta replay|compression``;
routes: ``api/meta_routes.py``.
"""
