"""Videos with C2PA content credentials, made in the tests: a throwaway ES256 CA + leaf chain (``cryptography``),
clips signed with ``c2pa-python`` (with or without an AI-generated declaration), tampered copies and a malformed
manifest box. Nothing is downloaded; the CA's PEM is what a test configures as the gateway's trust anchor.
"""

from __future__ import annotations

import datetime
import struct
from dataclasses import dataclass
from pathlib import Path

import c2pa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.services.provenance.bmff import C2PA_UUID

IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
SIGNER_NAME = "Test Generator Signer"
SIGNER_ORG = "Provenance Test Org"
GENERATOR = "TestGen"


@dataclass(frozen=True)
class SigningChain:
    """A CA and a leaf it issued: PEM bytes."""

    ca_pem: bytes
    chain_pem: bytes  # leaf then CA
    key_pem: bytes  # the leaf's private key (PKCS#8)


def _name(common_name: str) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    return x509.Name([*attributes, x509.NameAttribute(NameOID.ORGANIZATION_NAME, SIGNER_ORG)])


def _usage(*, sign: bool, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def make_chain(ca_name: str = "Provenance Test CA", signer_name: str = SIGNER_NAME) -> SigningChain:
    """A fresh CA and a C2PA-usable leaf (digitalSignature, emailProtection EKU, key identifiers), valid now."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name(ca_name))
        .issuer_name(_name(ca_name))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_usage(sign=False, ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name(signer_name))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(sign=True, ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return SigningChain(
        ca_pem=ca.public_bytes(pem),
        chain_pem=leaf.public_bytes(pem) + ca.public_bytes(pem),
        key_pem=key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )


def sign_video(source: Path, dest: Path, chain: SigningChain, *, source_type: str, ingredients: int = 0) -> Path:
    """``source`` signed into ``dest`` with one ``c2pa.created`` action of ``source_type`` (an IPTC digital source
    type: trainedAlgorithmicMedia for an AI generator, digitalCapture for a camera)."""
    manifest = {
        "claim_generator_info": [{"name": GENERATOR, "version": "1.0"}],
        "title": dest.name,
        "assertions": [
            {
                "label": "c2pa.actions",
                "data": {
                    "actions": [
                        {
                            "action": "c2pa.created",
                            "digitalSourceType": IPTC + source_type,
                            "softwareAgent": {"name": GENERATOR, "version": "1.0"},
                            "when": "2026-11-30T12:00:00Z",
                        }
                    ]
                },
            }
        ],
    }
    signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, chain.chain_pem, chain.key_pem, None))
    with c2pa.Builder(manifest) as builder:
        for i in range(ingredients):
            with source.open("rb") as ingredient:
                ingredient_json = {"title": f"ingredient-{i}.mp4", "relationship": "componentOf"}
                builder.add_ingredient(ingredient_json, "video/mp4", ingredient)
        with source.open("rb") as src, dest.open("wb") as out:
            builder.sign(signer, "video/mp4", src, out)
    return dest


def flip_media_byte(source: Path, dest: Path) -> Path:
    """A copy of a signed MP4 with one byte of the media data (inside ``mdat``) flipped: the hash binding breaks."""
    data = bytearray(source.read_bytes())
    start = _box_offset(bytes(data), b"mdat") + 16 + 100
    data[start] ^= 0xFF
    dest.write_bytes(bytes(data))
    return dest


def with_malformed_manifest(source: Path, dest: Path) -> Path:
    """An unsigned MP4 followed by a top-level C2PA ``uuid`` box whose JUMBF content is garbage."""
    payload = C2PA_UUID + b"\x00\x00\x00\x00" + b"manifest\x00" + b"\xde\xad\xbe\xef" * 64
    dest.write_bytes(source.read_bytes() + struct.pack(">I4s", 8 + len(payload), b"uuid") + payload)
    return dest


def _box_offset(data: bytes, kind: bytes) -> int:
    """Offset of the first top-level box of ``kind``."""
    offset = 0
    while offset + 8 <= len(data):
        length, name = struct.unpack(">I4s", data[offset : offset + 8])
        if name == kind:
            return offset
        if length == 1:
            length = struct.unpack(">Q", data[offset + 8 : offset + 16])[0]
        offset += length
    raise ValueError(f"no top-level {kind!r} box")
