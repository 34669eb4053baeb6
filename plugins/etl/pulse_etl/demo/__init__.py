"""A realistic, deterministic demo data set for the unified model (``pulse demo``).

:func:`~pulse_etl.demo.rows.generate` builds a year of engineering activity from a seed:
three projects, four teams, six repositories (one service each) and 28 people; pull
requests with their commits (merge commits and squash merges, a commit graph with
parents), reviews and review comments; staging and production deployments with the
commits each shipped, on per-service cadences (failures retried, hotfix deployments after
incidents); incidents, most following a production deployment (some naming it
explicitly), some of services nothing deploys (so never linked); two-week sprints per
project with stories, bugs and tasks and their status histories.

The same seed and end time give the same rows (ids are :func:`~pulse_etl.model.stable_id`
of natural keys, times are offsets from ``end``). :func:`~pulse_etl.demo.loading.load_demo`
writes them through the loader in one transaction (its COPY paths), then links incidents
as after any load, so a re-run with the same seed changes nothing. Afterwards the facts of
metric plugins that follow loads through a refresh queue (``dora.refresh``) are
recomputed at once, in process.

Modules, one job each:

* :mod:`~pulse_etl.demo.plan`: the organisation and how each repository ships;
* :mod:`~pulse_etl.demo.simulation`: a simulated year of activity;
* :mod:`~pulse_etl.demo.rows`: that year as model rows, and ``generate``;
* :mod:`~pulse_etl.demo.loading`: loading the rows into a tenant;
* :mod:`~pulse_etl.demo.tenant`: the Demo tenant and its admin login;
* :mod:`~pulse_etl.demo.command`: what ``pulse demo`` runs.
"""
