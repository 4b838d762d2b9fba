"""The `references` section: named reference images (a person, a pet, a car) a task can show the model."""

from __future__ import annotations

from pydantic import Field

from edge_agent.config.base import FilePath, Identifier, Section


class ReferenceImageConfig(Section):
    """One named reference image."""

    name: Identifier = Field(description="Name a task or question uses for this reference (e.g. rex).")
    image: FilePath = Field(description="The image file (JPEG or PNG).")
