"""Runs (one recorded report each) and their figures (one row per artifact, figure and slice, for trends).

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("recorded", sa.DateTime(timezone=True), nullable=False),
        sa.Column("command", sa.String(32), nullable=False),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("model_sha256", sa.String(64)),
        sa.Column("teacher_sha256", sa.String(64)),
        sa.Column("config", sa.Text),
        sa.Column("targets", sa.Text, nullable=False),
        sa.Column("branch", sa.Text),
        sa.Column("commit", sa.String(64)),
        sa.Column("exit_code", sa.Integer, nullable=False),
        sa.Column("passed", sa.Boolean, nullable=False),
        sa.Column("folder", sa.Text),
        sa.Column("report", sa.Text, nullable=False),
    )
    op.create_index("runs_by_model", "runs", ["model", "id"])
    op.create_table(
        "figures",
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("artifact", sa.Text, nullable=False),
        sa.Column("figure", sa.Text, nullable=False),
        sa.Column("slice", sa.Text),
        sa.Column("value", sa.Float, nullable=False),
    )
    op.create_index("figures_by_artifact", "figures", ["artifact", "figure", "run_id"])


def downgrade() -> None:
    op.drop_table("figures")
    op.drop_table("runs")
