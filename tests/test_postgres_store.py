"""An `mlflow server` on PostgreSQL, the store a shared tracking server runs on, takes and returns runs."""

from __future__ import annotations

import mlflow
import pytest
import sqlalchemy

pytestmark = pytest.mark.slow


def test_a_run_logged_through_the_server_lands_in_postgres(mlflow_postgres_server) -> None:
    url, backend_uri = mlflow_postgres_server
    client = mlflow.MlflowClient(url)
    experiment = client.create_experiment("postgres-store")
    run = client.create_run(experiment, tags={"study": "depth"})
    client.log_metric(run.info.run_id, "val_loss", 0.25, step=3)
    client.set_terminated(run.info.run_id)
    client.create_run(experiment, tags={"study": "width"})  # a run the filter must leave out

    found = client.search_runs([experiment], filter_string="tags.study = 'depth'")
    assert [r.info.run_id for r in found] == [run.info.run_id]
    assert found[0].data.metrics == {"val_loss": 0.25}

    # Read back from the database itself: the server stores in PostgreSQL, not in a SQLite file of its own.
    engine = sqlalchemy.create_engine(backend_uri)
    try:
        with engine.connect() as db:
            rows = db.execute(
                sqlalchemy.text("SELECT status FROM runs WHERE run_uuid = :id"), {"id": run.info.run_id}
            ).all()
    finally:
        engine.dispose()
    assert rows == [("FINISHED",)]
