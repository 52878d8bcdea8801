"""The ``provenance`` object of a prediction (the video's C2PA content credentials) in the OpenAPI
schema. The policy that links it to the verdict: ``gateway.services.provenance.policy`` and the README."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

VerdictReason = Literal["detector", "content_credentials"]


class ProvenanceAction(BaseModel):
    """One action of the active manifest (``c2pa.actions``)."""

    action: str | None = Field(default=None, examples=["c2pa.created"])
    digital_source_type: str | None = Field(
        default=None, description="the IPTC digital source type's name", examples=["trainedAlgorithmicMedia"]
    )
    software_agent: str | None = None
    when: str | None = None


class Provenance(BaseModel):
    """The video's C2PA manifest store as read by the gateway; shown, and trusted only as far as ``valid`` and
    ``trusted`` say."""

    present: bool = Field(default=False, description="a manifest store is embedded in the video")
    valid: bool = Field(
        default=False, description="the manifest is intact and its hash bindings match the video's bytes"
    )
    trusted: bool = Field(
        default=False,
        description="valid, and the signer chains to a configured trust anchor (GATEWAY_C2PA_TRUST_ANCHORS)",
    )
    validation_state: Literal["Invalid", "Valid", "Trusted"] | None = Field(default=None, description="the reader's")
    validation_errors: list[str] = Field(
        default_factory=list,
        description="C2PA failure codes (e.g. assertion.bmffHash.mismatch, signingCredential.untrusted); "
        "gateway.unreadable when the manifest store could not be read (see errors)",
    )
    signer: str | None = Field(default=None, description="common name of the signing certificate")
    issuer: str | None = Field(default=None, description="organisation of the signing certificate")
    claim_generator: str | None = Field(default=None, description="the tool that made the manifest")
    created: str | None = Field(
        default=None, description="the signature's time stamp, else the c2pa.created action's `when`"
    )
    actions: list[ProvenanceAction] = Field(default_factory=list)
    ai_generated: bool = Field(
        default=False,
        description="an action declares trainedAlgorithmicMedia or compositeWithTrainedAlgorithmicMedia",
    )
    ingredients_count: int = 0
