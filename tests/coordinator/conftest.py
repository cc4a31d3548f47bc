"""Coordinator test fixtures (defined in ``service_fixtures`` so the API and integration tests share them)."""

from __future__ import annotations

from service_fixtures import free_port, moto_endpoint  # noqa: F401
