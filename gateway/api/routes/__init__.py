"""Route modules, one per concern; ``ROUTERS`` lists them in the order they are mounted."""

from gateway.api.routes import health, info, media, predict

ROUTERS = (predict.router, health.router, info.router, media.router, health.metrics_router)
