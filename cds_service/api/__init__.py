"""HTTP layer: routers, request body handling and the error contract."""
