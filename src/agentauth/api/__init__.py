"""REST adapter: FastAPI routers under /api/v1 and the /.well-known documents."""
