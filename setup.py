"""Packaging beyond what pyproject.toml can say: `dbt_like_sql/` stays at the top of the
checkout (it is the project's card) and ships inside the package as
`prefgen_dagster/dbt_like_sql/`, so an installed prefgen finds its SQL."""

from setuptools import find_packages, setup

SQL = "prefgen_dagster.dbt_like_sql"

setup(
    packages=[*find_packages(include=["prefgen_dagster*"]), SQL, f"{SQL}.models", f"{SQL}.checks"],
    package_dir={SQL: "dbt_like_sql"},
)
