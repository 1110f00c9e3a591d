"""The `dbt_like_sql/` folder: models and checks, loaded, validated, rendered."""
