"""PostgreSQL: the pool, the migrations runner and the SQL migrations."""
