"""Route modules, one per concern; ``ROUTERS`` lists them in the order they are mounted."""

from gateway.api.routes import batch, health, info, jobs, media, predict

ROUTERS = (predict.router, batch.router, jobs.router, health.router, info.router, media.router, health.metrics_router)
