"""The expert rating study (the paper's Fig. 3): a blinded web application for ophthalmologists, its database,
and the analysis.

``config`` (the study YAML), ``db`` and ``migrations/`` (SQLAlchemy models, Alembic schema), ``media`` (blinded
copies of the videos), ``design`` (balanced, randomised assignments with attention checks), ``study`` (init,
links, revocation), ``app`` (the FastAPI application and its templates), ``export`` (CSV) and ``analysis``
(intervals, agreement, checks, figures). ``python -m benchmarks.rating`` runs it (:mod:`benchmarks.rating.cli`).
"""
